"""Bringing the streaming pipeline up and down on a Ray cluster: the Serve inference app, the
coordinator and, through it, the consumer pool, for the production lane and for a candidate's
shadow or staging lane. All Ray calls of the CLI go through here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, cast

import ray

from actors._edge_ingest import start_edge_ingest, stop_edge_ingest
from actors._monitor import MONITOR_NAME, MonitorActor
from actors.coordinator import COORDINATOR_NAME, MAX_CONSUMER_GENERATIONS, Coordinator
from actors.model_directory import MODEL_DIRECTORY_NAME, ModelTarget, model_directory
from actors.naming import namespace
from ecgstream.artifact import load_artifact
from ecgstream.errors import ConfigurationError
from ecgstream.lanes import lane as lane_named
from ecgstream.settings import Settings

SWITCH_TIMEOUT_S = 60.0


def connect(settings: Settings) -> None:
    if ray.is_initialized():
        return
    # the local stack keeps Ray on loopback; that must be decided before ray is imported
    # (ecgstream.cli does it), otherwise the driver looks for the head at the routable address
    if settings.ray.address is None and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise ConfigurationError(
            "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray to use the local stack"
        )
    ensure_reachable(settings)
    ray.init(
        address=settings.ray_address,
        namespace=settings.ray.namespace,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )


def ensure_reachable(settings: Settings, timeout_s: float = 3.0) -> None:
    """Fail in seconds, with the fix, when nothing answers at the Ray address (ray.init would
    retry for minutes, then name only the address)."""
    address = settings.ray_address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        fix = (
            "start the local stack with `ecgstream cluster up` (and `ecgstream stream up` for "
            "the pipeline)"
            if settings.ray.address is None
            else "check ECGSTREAM_RAY__ADDRESS and that the cluster is up"
        )
        raise ConfigurationError(
            f"no Ray cluster answers at {settings.ray_address} ({exc.strerror or exc}): {fix}"
        ) from None


def stream_up(
    settings: Settings, consumers: int = 2, replicas: int = 1, model_dir: str | None = None
) -> dict[str, Any]:
    connect(settings)
    deploy_lane_model(settings, "production", model_dir, replicas)
    return start_consumer_pool(settings, consumers, model_dir)


def start_consumer_pool(
    settings: Settings, consumers: int, model_dir: str | None = None
) -> dict[str, Any]:
    """The monitor and the coordinator with its consumers (detached, idempotent); the
    production lane's Serve app must be deployed already (`deploy_lane_model`, or a RayService's
    serveConfigV2)."""
    from cluster.kafka_broker import ensure_topics

    asyncio.run(ensure_topics(settings))
    pinned = settings.ray.monitor_resource
    MonitorActor.options(  # type: ignore[attr-defined]
        name=MONITOR_NAME,
        namespace=namespace(),
        lifetime="detached",
        get_if_exists=True,
        resources={pinned: 1} if pinned else None,
    ).remote(settings.to_json(), model_dir)
    register_monitor_target(settings)
    start_edge_ingest(settings)  # edge results into PostgreSQL while the stream is up
    coordinator = Coordinator.options(  # type: ignore[attr-defined]
        name=COORDINATOR_NAME, namespace=namespace(), lifetime="detached", get_if_exists=True
    ).remote(settings.to_json(), consumers, model_dir)
    return ray.get(coordinator.start.remote(), timeout=300)


def deploy_lane_model(
    settings: Settings, lane: str, model_dir: str | None, replicas: int = 1
) -> float:
    """Deploy (or keep) the lane's Serve application running `model_dir`; returns the seconds
    until it was ready."""
    from ray import serve

    from cluster.kafka_broker import ensure_topics
    from serve_app.inference import build_app

    asyncio.run(ensure_topics(settings))
    version = load_artifact(None if model_dir is None else Path(model_dir)).version
    directory = model_directory()
    # the target first: a replica that starts now loads it, whatever its argument says
    ray.get(directory.set_target.remote(lane, ModelTarget(version, model_dir)), timeout=30)
    start_serve(settings)
    started = time.monotonic()
    # the production classifier scales itself when the pool does (decision 100); the
    # candidate lanes stay small
    autoscaling = (
        settings.scaling.classifier_autoscaling()
        if lane == "production" and settings.scaling.autoscale
        else None
    )
    serve.run(
        build_app(
            model_dir, replicas, lane, classifier=settings.classifier, autoscaling=autoscaling
        ),
        name=lane_named(lane).serve_app,
        route_prefix=None,
        blocking=False,
    )
    _wait_app_running(lane_named(lane).serve_app, timeout=settings.local.startup_timeout_s)
    return time.monotonic() - started


def start_serve(settings: Settings) -> None:
    """Serve with its HTTP proxy on the configured port (the REST API's); idempotent."""
    from ray import serve

    serve.start(http_options=serve_http_options(settings))


def serve_http_options(settings: Settings) -> dict[str, object]:
    """Loopback only; on the secure stack, HTTPS with the certificate its CA issued (Ray's
    HAProxy ingress cannot terminate TLS, so the secure stack runs Serve's own proxy)."""
    options: dict[str, object] = {"host": "127.0.0.1", "port": settings.local.serve_http_port}
    if settings.local_secure:
        options["ssl_certfile"] = str(settings.tls_dir / "api.crt")
        options["ssl_keyfile"] = str(settings.tls_dir / "api.key")
    return options


def api_base_url(settings: Settings) -> str:
    scheme = "https" if settings.local_secure else "http"
    return f"{scheme}://127.0.0.1:{settings.local.serve_http_port}"


def api_up(settings: Settings, model_dir: str | None = None, replicas: int = 1) -> str:
    """Deploy the REST API (ingress replicas that classify); returns its base URL."""
    from ray import serve

    from serve_app.api import API_APP_NAME, build_api

    connect(settings)
    model_directory()  # the API's replicas follow the production lane's promotions
    start_serve(settings)
    serve.run(
        build_api(settings.to_json(), model_dir, replicas),
        name=API_APP_NAME,
        route_prefix="/",
        blocking=False,
    )
    _wait_app_running(API_APP_NAME, timeout=settings.local.startup_timeout_s)
    return api_base_url(settings)


def api_down(settings: Settings) -> None:
    from ray import serve

    from serve_app.api import API_APP_NAME

    connect(settings)
    with contextlib.suppress(Exception):
        serve.delete(API_APP_NAME)


def _wait_app_running(app: str, timeout: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout
    while True:
        status = serve.status().applications.get(app)
        state = str(status.status) if status is not None else "MISSING"
        if state.endswith("RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED") or time.monotonic() > deadline:
            detail = status.message if status is not None else ""
            raise ConfigurationError(f"Serve application {app} is {state}: {detail}"[:2000])
        time.sleep(0.5)


def switch_model(
    settings: Settings, lane: str, model_dir: str | None, timeout: float = SWITCH_TIMEOUT_S
) -> dict[str, str]:
    """Make the lane's running replicas swap to `model_dir` without a redeploy, and wait until
    every live replica says it runs it. On a timeout the previous target is restored."""
    connect(settings)
    version = load_artifact(None if model_dir is None else Path(model_dir)).version
    directory = ray.get_actor(MODEL_DIRECTORY_NAME, namespace=namespace())
    previous = cast("ModelTarget | None", ray.get(directory.target.remote(lane), timeout=30))
    ray.get(directory.set_target.remote(lane, ModelTarget(version, model_dir)), timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        loaded = ray.get(directory.loaded.remote(lane), timeout=30)
        if loaded and all(v == version for v in loaded.values()):
            break
        if time.monotonic() > deadline:
            if previous is not None:
                ray.get(directory.set_target.remote(lane, previous), timeout=30)
            raise ConfigurationError(
                f"the {lane} replicas did not switch to {version} within {timeout:.0f} s "
                f"(they run {sorted(set(loaded.values()))}); the previous model stays"
            )
        time.sleep(0.2)
    if lane == "production":
        with contextlib.suppress(ValueError):
            ray.get(monitor_handle().use_model.remote(model_dir), timeout=60)
    return loaded


def served_model(settings: Settings, lane: str = "production") -> ModelTarget | None:
    """What the lane's replicas are told to run (None: the lane is not up)."""
    connect(settings)
    try:
        directory = ray.get_actor(MODEL_DIRECTORY_NAME, namespace=namespace())
    except ValueError:
        return None
    target = cast("ModelTarget | None", ray.get(directory.target.remote(lane), timeout=30))
    return target


def lane_up(
    settings: Settings, lane: str, model_dir: str, consumers: int = 1, replicas: int = 1
) -> dict[str, Any]:
    """Start a candidate's lane (shadow or staging): its Serve app and its own consumer pool.
    Returns the coordinator's status with the Serve app's `load_s`."""
    if lane == "production":
        raise ConfigurationError("use stream_up for the production lane")
    connect(settings)
    if lane == "staging":
        lane_down(settings, lane)  # whatever an interrupted run left behind
    load_s = deploy_lane_model(settings, lane, model_dir, replicas)
    coordinator = Coordinator.options(  # type: ignore[attr-defined]
        name=lane_named(lane).coordinator_name,
        namespace=namespace(),
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings.to_json(), consumers, model_dir, lane)
    status = ray.get(coordinator.start.remote(), timeout=300)
    return {**status, "load_s": load_s}


def lane_status(settings: Settings, lane: str) -> dict[str, Any] | None:
    connect(settings)
    try:
        coordinator = ray.get_actor(lane_named(lane).coordinator_name, namespace=namespace())
    except ValueError:
        return None
    status = cast("dict[str, Any] | None", ray.get(coordinator.status.remote(), timeout=60))
    return status


def lane_down(settings: Settings, lane: str) -> None:
    """Stop a lane's consumers and Serve app; production is not touched (and vice versa)."""
    from ray import serve

    connect(settings)
    _stop_coordinator(lane)
    _kill_consumers(lane_named(lane).consumer_prefix)
    with contextlib.suppress(Exception):
        serve.delete(lane_named(lane).serve_app)
    with contextlib.suppress(ValueError):
        ray.get(
            ray.get_actor(MODEL_DIRECTORY_NAME, namespace=namespace()).forget.remote(lane),
            timeout=30,
        )


def _kill_consumers(prefix: str) -> None:
    """Consumers of a lane whose coordinator is gone (a killed `release` command leaves them:
    they are detached) would hold CPUs and partitions forever."""
    from ray.util.state import list_actors

    context = ray.get_runtime_context()
    with contextlib.suppress(Exception):
        # the state API needs the address: it does not use the driver's connection
        alive = list_actors(
            address=context.gcs_address, filters=[("state", "=", "ALIVE")], limit=10_000
        )
        for actor in alive:
            if actor.name and actor.name.startswith(prefix) and actor.ray_namespace == namespace():
                with contextlib.suppress(ValueError):
                    ray.kill(ray.get_actor(actor.name, namespace=namespace()), no_restart=True)


def _stop_coordinator(lane: str) -> None:
    """The lane's coordinator drains and stops its consumers, then goes; any consumer still
    running afterwards (the coordinator died or timed out mid-way) is killed by name, so a later
    `stream up` never adopts a stopped or half-started consumer."""
    named = lane_named(lane)
    with contextlib.suppress(ValueError):
        coordinator = ray.get_actor(named.coordinator_name, namespace=namespace())
        with contextlib.suppress(Exception):
            ray.get(coordinator.shutdown.remote(), timeout=60)
        ray.kill(coordinator, no_restart=True)
    for index in range(MAX_CONSUMER_GENERATIONS):
        with contextlib.suppress(ValueError):
            ray.kill(
                ray.get_actor(f"{named.consumer_prefix}{index}", namespace=namespace()),
                no_restart=True,
            )


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
    return ray.get_actor(COORDINATOR_NAME, namespace=namespace())


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
    return ray.get_actor(MONITOR_NAME, namespace=namespace())


def stream_down(settings: Settings) -> None:
    """Everything down: the candidate lanes, the production lane, the monitor."""
    from ray import serve

    connect(settings)
    for lane in ("shadow", "staging"):
        lane_down(settings, lane)
    with contextlib.suppress(ValueError):
        ray.kill(monitor_handle(), no_restart=True)
    _stop_coordinator("production")
    stop_edge_ingest()
    with contextlib.suppress(Exception):
        serve.delete(lane_named("production").serve_app)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(MODEL_DIRECTORY_NAME, namespace=namespace()), no_restart=True)
