"""The RayService's serveConfigV2 on the real local Ray, applied the way KubeRay applies it
(a PUT of the config to the dashboard's Serve REST API), with the pod environment given as the
applications' runtime_env: the three applications come up, replayed samples come out as beats
in PostgreSQL, and when the coordinator dies the stream application's supervisor starts it again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
import yaml

from actors.coordinator import COORDINATOR_NAME
from actors.naming import namespace
from actors.pipeline import connect, stream_down
from ecgstream.io.device_simulator import replay
from ecgstream.settings import Settings
from tests.integration.conftest import settings_env
from tests.integration.pipeline_support import RECORDS, offline_reference, wait_for_beats

ROOT = Path(__file__).resolve().parents[2]
SCALED_DOWN = {"ecgstream-inference": {"replicas": "1"}, "ecgstream-api": {"replicas": "1"},
               "ecgstream-stream": {"consumers": "2"}}  # fmt: skip


def _serve_config(settings: Settings) -> dict:
    service = yaml.safe_load((ROOT / "k8s/base/rayservice.yaml").read_text())
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    config["http_options"] = {"host": "127.0.0.1", "port": settings.local.serve_http_port}
    environment = {
        k: v for k, v in settings_env(settings).items() if k.startswith("ECGSTREAM_")
    }  # what the ConfigMap and Secret give a pod
    environment["ECGSTREAM_POSTGRES__DSN"] = settings.postgres_dsn()
    for app in config["applications"]:
        app["args"].update(SCALED_DOWN[app["name"]])
        app["runtime_env"] = {"env_vars": environment}
    return config


def _dashboard(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.local.ray_dashboard_port}"


@pytest.fixture(scope="module")
def deployed(settings: Settings) -> Iterator[Settings]:
    connect(settings)
    config = _serve_config(settings)
    response = httpx.put(f"{_dashboard(settings)}/api/serve/applications/", json=config, timeout=60)
    assert response.status_code == 200, response.text
    try:
        deadline = time.monotonic() + 300
        while True:
            status = httpx.get(f"{_dashboard(settings)}/api/serve/applications/", timeout=30)
            apps = status.json().get("applications", {})
            states = {name: apps.get(name, {}).get("status") for name in SCALED_DOWN}
            if set(states.values()) == {"RUNNING"}:
                break
            assert time.monotonic() < deadline, json.dumps(states)
            failed = {
                name: " ".join(
                    [apps[name].get("message", "")]
                    + [d.get("message", "") for d in apps[name].get("deployments", {}).values()]
                )
                for name, state in states.items()
                if state == "DEPLOY_FAILED"
            }
            assert not failed, "\n".join(f"{n}: {m[-2500:]}" for n, m in failed.items())
            time.sleep(2)
        yield settings
    finally:
        httpx.delete(f"{_dashboard(settings)}/api/serve/applications/", timeout=120)
        stream_down(settings)
        ray.shutdown()


def test_the_serve_config_runs_the_stream_and_the_api(deployed: Settings, mitdb_dir: Path) -> None:
    prefix = f"k8s{uuid.uuid4().hex[:6]}"
    expected = offline_reference(mitdb_dir, 2, 30, prefix)
    asyncio.run(replay(deployed, mitdb_dir, RECORDS, 2, speed=10, duration_s=30, prefix=prefix))
    stored = asyncio.run(wait_for_beats(deployed, prefix, len(expected.beats), timeout_s=240))
    assert set(stored) == set(expected.beats)
    url = f"http://127.0.0.1:{deployed.local.serve_http_port}"
    assert httpx.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}


def test_the_supervisor_starts_a_dead_coordinator_again(deployed: Settings) -> None:
    first = ray.get_actor(COORDINATOR_NAME, namespace=namespace())
    first_id = first._actor_id.hex()
    ray.kill(first, no_restart=True)
    deadline = time.monotonic() + 240  # Serve's health check runs every 30 s
    while True:
        try:
            again = ray.get_actor(COORDINATOR_NAME, namespace=namespace())
            if again._actor_id.hex() != first_id:
                break
        except ValueError:
            pass
        assert time.monotonic() < deadline, "the coordinator was not started again"
        time.sleep(2)
    state = ray.get(again.start.remote(), timeout=120)
    assert state  # the new coordinator runs its consumers
