"""One real local stack for the whole test session, on its own state dir and ports.

The ports differ from the defaults so `make test` can run while a `make demo` stack is up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.stack import LocalStack
from ecgstream.settings import LocalStackSettings, PrometheusSettings, Settings, StationSettings

TEST_PORTS = {
    "kafka_port": 29192,
    "kafka_controller_port": 29193,
    "postgres_port": 55442,
    "prometheus_port": 29190,
    "ray_gcs_port": 6391,
    "ray_dashboard_port": 8266,
    "ray_metrics_port": 28081,
    "ray_client_port": 20002,
    "ray_agent_port": 52366,
    "serve_http_port": 28000,
    "serve_replica_port_min": 30200,
    "haproxy_stats_port": 28405,
    "haproxy_metrics_port": 28102,
}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess (`ecgstream ...`) build these same settings."""
    env = {"ECGSTREAM_STATE_DIR": str(settings.state_dir)}
    for name, value in settings.local.model_dump().items():
        env[f"ECGSTREAM_LOCAL__{name.upper()}"] = str(value)
    env["ECGSTREAM_PROMETHEUS__METRICS_PORT"] = str(settings.prometheus.metrics_port)
    for name, value in settings.station.model_dump(mode="json").items():
        if value is not None:
            text = json.dumps(value) if isinstance(value, list) else str(value)
            env[f"ECGSTREAM_STATION__{name.upper()}"] = text
    return {**os.environ, **env}


def run_cli(
    settings: Settings, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`ecgstream ARGS` as a user runs it, against these settings' stack."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("ecgstream")), *args],
        env={**settings_env(settings), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


TEST_METRICS_PORT = 29464  # the monitor's /metrics (a demo stack's uses 9464)
TEST_STATION_PORT = 28700  # the central station (a demo stack's uses 28600)


def make_test_settings(state_dir: Path, **ports: int) -> Settings:
    return Settings(
        state_dir=state_dir,
        prometheus=PrometheusSettings(metrics_port=TEST_METRICS_PORT),
        station=StationSettings(port=TEST_STATION_PORT),
        local=LocalStackSettings(**{**TEST_PORTS, **ports}, ray_object_store_mb=512),
    )


def service_state_dir(prefix: str) -> Path:
    """A fresh state dir the `postgres` user can traverse (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    state_dir = service_state_dir("ecgstream-test-")
    local = LocalStack(make_test_settings(state_dir))
    try:
        local.up()
        yield local
    finally:
        local.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack: LocalStack) -> Settings:
    return stack.settings


@pytest.fixture(scope="module")
def pipeline(settings: Settings) -> Iterator[Settings]:
    """The streaming pipeline (Serve app, coordinator, 2 consumers, monitor) on the test stack,
    for one test module."""
    import ray

    from actors.pipeline import stream_down, stream_up

    stream_up(settings, consumers=2, replicas=1)
    try:
        yield settings
    finally:
        stream_down(settings)
        ray.shutdown()
