"""The real Prometheus scrapes a target registered through file discovery."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from cluster.prometheus_server import register_scrape_target
from cluster.stack import LocalStack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base_url: str, promql: str) -> list[dict]:
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success"
    return body["data"]["result"]


def test_prometheus_scrapes_a_registered_target(stack: LocalStack) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("ecgstream_test_answer", "a value the test looks for", registry=registry)
    gauge.set(42.0)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target = register_scrape_target(
        stack.prometheus.targets_dir, "pytest", [f"127.0.0.1:{port}"], {"suite": "pytest"}
    )
    try:
        deadline = time.monotonic() + 60
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            result = _query(stack.prometheus.endpoint, 'ecgstream_test_answer{suite="pytest"}')
            time.sleep(1)
        assert result, "Prometheus never scraped the test target"
        assert float(result[0]["value"][1]) == 42.0
        assert result[0]["metric"]["job"] == "ecgstream"
    finally:
        target.unlink()
        server.shutdown()
        thread.join(timeout=5)
