"""The local stack: Kafka, PostgreSQL, Prometheus and Ray on this machine, as one unit.

`up` is idempotent (a running component is left alone), starts components in dependency order
and waits for real readiness; `down` stops, in reverse order, only processes it started.
A component whose address is configured to an external service is not started at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Protocol

from cluster._postgres_server import PostgresServer
from cluster._ray_head import RayHead
from cluster.kafka_broker import KafkaBroker
from cluster.prometheus_server import PrometheusServer
from cluster.state import ComponentStatus, StatePaths
from cluster.station_server import StationServer
from ecgstream.errors import StackError
from ecgstream.settings import Settings, write_secret_file


class Component(Protocol):
    name: str

    def start(self) -> None: ...
    def wait_ready(self) -> None: ...
    def after_ready(self) -> None: ...
    def stop(self) -> bool: ...
    def status(self) -> ComponentStatus: ...


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = StatePaths(settings.state_dir)
        self.kafka = KafkaBroker(settings, self.paths)
        self.postgres = PostgresServer(settings, self.paths)
        self.prometheus = PrometheusServer(settings, self.paths)
        self.ray = RayHead(settings, self.paths)

    def managed(self) -> list[Component]:
        """The components this machine runs, in start order."""
        external = {
            "kafka": self.settings.kafka.bootstrap_servers is not None,
            "postgres": self.settings.postgres.dsn is not None,
            "prometheus": self.settings.prometheus.url is not None,
            "ray": self.settings.ray.address is not None,
        }
        components: list[Component] = [self.kafka, self.postgres, self.prometheus, self.ray]
        return [c for c in components if not external[c.name]]

    def make_secure(self) -> None:
        """Mark the state dir secure; refused while plaintext components of it are running."""
        if self.settings.local_secure:
            return
        running = [c.name for c in self.managed() if c.status().pid is not None]
        if running:
            raise StackError(
                "stack", f"{', '.join(running)} already running in plaintext: `cluster down` first"
            )
        self.settings.secure_marker.parent.mkdir(parents=True, exist_ok=True)
        self.settings.secure_marker.write_text(
            "set by `ecgstream cluster up --secure`: TLS and credentials everywhere\n"
        )

    def up(self, on_event: Callable[[str, str], None] = lambda name, event: None) -> None:
        ensure_fleet_secret(self.settings)
        components = self.managed()
        # start everything first, then wait: the JVM, postgres and Ray boot in parallel
        for component in components:
            on_event(component.name, "starting")
            component.start()
        for component in components:
            component.wait_ready()
            component.after_ready()
            on_event(component.name, "ready")

    def down(self, on_event: Callable[[str, str], None] = lambda name, event: None) -> None:
        if StationServer(self.settings).stop():  # it reads Kafka and PostgreSQL: stop it first
            on_event("station", "stopped")
        for component in reversed(self.managed()):
            stopped = component.stop()
            on_event(component.name, "stopped" if stopped else "was not running")

    def status(self) -> list[ComponentStatus]:
        return [component.status() for component in self.managed()]


def ensure_fleet_secret(settings: Settings) -> None:
    """The local stack's fleet secret (device keys derive from it), made once, 0600; a
    deployment that sets ECGSTREAM_IDENTITY__FLEET_SECRET keeps its own."""
    if settings.identity.fleet_secret is None and not settings.fleet_secret_file.exists():
        write_secret_file(settings.fleet_secret_file, secrets.token_hex(32))
