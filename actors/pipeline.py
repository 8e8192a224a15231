"""Bringing the streaming pipeline up and down on a Ray cluster: the Serve inference app, the
coordinator and, through it, the consumer pool. All Ray calls of the CLI go through here."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import ray

from actors.coordinator import COORDINATOR_NAME, Coordinator
from actors.monitor import MONITOR_NAME, MonitorActor
from ecgstream.errors import ConfigurationError
from ecgstream.settings import Settings


def connect(settings: Settings) -> None:
    if ray.is_initialized():
        return
    # the local stack keeps Ray on loopback; that must be decided before ray is imported
    # (ecgstream.cli does it), otherwise the driver looks for the head at the routable address
    if settings.ray.address is None and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise ConfigurationError(
            "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray to use the local stack"
        )
    ray.init(
        address=settings.ray_address,
        namespace=settings.ray.namespace,
        log_to_driver=False,
        logging_level="WARNING",
    )


def stream_up(
    settings: Settings, consumers: int = 2, replicas: int = 1, model_dir: str | None = None
) -> dict[str, Any]:
    from ray import serve

    from serve_app.inference import APP_NAME, build_app

    connect(settings)
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app(model_dir, replicas), name=APP_NAME, route_prefix=None, blocking=False)
    MonitorActor.options(name=MONITOR_NAME, lifetime="detached", get_if_exists=True).remote(
        settings.model_dump_json(), model_dir
    )
    register_monitor_target(settings)
    coordinator = Coordinator.options(
        name=COORDINATOR_NAME, lifetime="detached", get_if_exists=True
    ).remote(settings.model_dump_json(), consumers, model_dir)
    return ray.get(coordinator.start.remote(), timeout=300)


def register_monitor_target(settings: Settings) -> None:
    """Point the local stack's Prometheus at the monitor's /metrics (file discovery)."""
    if settings.prometheus.url is not None:
        return  # an external Prometheus: its owner configures the scrape
    from cluster.prometheus_server import register_scrape_target
    from cluster.state import StatePaths

    targets = StatePaths(settings.state_dir).component_dir("prometheus") / "targets"
    register_scrape_target(
        targets,
        "ecgstream-monitor",
        [f"127.0.0.1:{settings.prometheus.metrics_port}"],
        {"component": "monitor"},
    )


def coordinator_handle() -> Any:
    return ray.get_actor(COORDINATOR_NAME)


def stream_status(settings: Settings) -> dict[str, Any] | None:
    from ray import serve

    connect(settings)
    try:
        coordinator = coordinator_handle()
    except ValueError:
        return None
    status = ray.get(coordinator.status.remote(), timeout=60)
    with contextlib.suppress(ValueError, ray.exceptions.RayError):
        status["monitor"] = ray.get(monitor_handle().summary.remote(), timeout=30)
    with contextlib.suppress(Exception):
        serve_status = serve.status()
        status["serve"] = {
            name: {
                "status": str(app.status),
                "replicas": {
                    d: sum(dep.replica_states.values()) for d, dep in app.deployments.items()
                },
            }
            for name, app in serve_status.applications.items()
        }
    return status


def monitor_handle() -> Any:
    return ray.get_actor(MONITOR_NAME)


def stream_down(settings: Settings) -> None:
    from ray import serve

    from serve_app.inference import APP_NAME

    connect(settings)
    with contextlib.suppress(ValueError):
        ray.kill(monitor_handle(), no_restart=True)
    with contextlib.suppress(ValueError):
        coordinator = coordinator_handle()
        with contextlib.suppress(Exception):
            ray.get(coordinator.shutdown.remote(), timeout=60)
        ray.kill(coordinator, no_restart=True)
    with contextlib.suppress(Exception):
        serve.delete(APP_NAME)
