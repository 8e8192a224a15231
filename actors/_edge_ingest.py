"""The edge ingest actor: a thin Ray shell that runs `EdgeResultsIngest` (edge results from
Kafka into PostgreSQL, exactly once) while the stream is up. One per cluster. It starts in its
constructor, on its own thread and event loop, so when Ray restarts it after a crash it simply
resumes from its group's committed offsets."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AsyncExitStack, suppress
from typing import Any

import ray

from actors.naming import namespace
from ecgstream.io.edge_ingest import INGEST_GROUP, EdgeResultsIngest
from ecgstream.io.kafka import make_consumer
from ecgstream.io.sinks import PostgresSink
from ecgstream.settings import Settings

EDGE_INGEST_NAME = "ecgstream-edge-ingest"


@ray.remote(num_cpus=0, max_restarts=-1)
class EdgeIngestActor:
    def __init__(self, settings_json: str) -> None:
        self._settings = Settings.from_json(settings_json)
        self._ingest: EdgeResultsIngest | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: str | None = None
        self._thread = threading.Thread(target=self._serve, name="edge-ingest", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported by ready(); Ray restarts it when it is killed
            self._failed = f"{type(exc).__name__}: {exc}"
            self._ready.set()

    async def _main(self) -> None:
        import asyncpg

        settings = self._settings
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with AsyncExitStack() as clients:
            consumer = await clients.enter_async_context(
                make_consumer(
                    settings, settings.topics.beats, settings.topics.alerts, group_id=INGEST_GROUP
                )
            )
            pool = await clients.enter_async_context(
                asyncpg.create_pool(
                    settings.postgres_dsn("sink"), min_size=1, max_size=1, command_timeout=30
                )
            )
            self._ingest = EdgeResultsIngest(
                consumer, PostgresSink(pool), settings.topics.beats, settings.topics.alerts
            )
            self._ready.set()
            await self._ingest.run(self._stop)

    def ready(self, timeout_s: float = 90.0) -> bool:
        """Wait until its clients are open; raises what stopped it from opening them."""
        self._ready.wait(timeout_s)
        if self._failed is not None:
            raise RuntimeError(f"edge ingest did not start: {self._failed}")
        return self._ingest is not None

    def stats(self) -> dict[str, Any]:
        return self._ingest.stats() if self._ingest is not None else {}

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def start_edge_ingest(settings: Settings) -> Any:
    """The cluster's edge ingest (started if it is not running), ready."""
    actor = EdgeIngestActor.options(  # type: ignore[attr-defined]
        name=EDGE_INGEST_NAME, namespace=namespace(), lifetime="detached", get_if_exists=True
    ).remote(settings.to_json())
    ray.get(actor.ready.remote(), timeout=120)
    return actor


def edge_ingest_handle() -> Any:
    return ray.get_actor(EDGE_INGEST_NAME, namespace=namespace())


def stop_edge_ingest() -> None:
    try:
        actor = edge_ingest_handle()
    except ValueError:
        return
    with suppress(Exception):
        ray.get(actor.stop.remote(), timeout=40)
    ray.kill(actor, no_restart=True)
