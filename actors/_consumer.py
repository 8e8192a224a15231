"""Consumer actor: the Ray shell around the delivery engine (`ecgstream/delivery/engine.py`,
where a beat enters, is classified, is stored and is committed).

The actor owns the clients (an aiokafka consumer, a transactional producer, an asyncpg pool,
the lane's Serve handle) under one exit stack, the partitions the coordinator assigns, and the
patients' state. It changes its assignment, pauses and drains only between batches: it stops the
engine's loop, which finishes and commits every batch already fetched, and starts it again.
A failure retrying cannot fix halts delivery for this consumer's partitions with the cause in
`stats()["halted"]` and the log (nothing is skipped); the partitions' lag then grows, which the
lag alert reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors._monitor_feed import MonitorFeed
from ecgstream.artifact import load_artifact
from ecgstream.delivery.engine import DeliveryEngine, DeliveryHaltedError
from ecgstream.delivery.ports import Committer, Sink
from ecgstream.io.device_keys import device_verifier
from ecgstream.io.kafka import make_consumer, make_producer
from ecgstream.io.kafka_transactions import TransactionalKafkaCommitter, transactional_producer
from ecgstream.io.partition_fetcher import PartitionFetcher
from ecgstream.io.sinks import KafkaSink, PostgresSink
from ecgstream.lanes import lane as lane_named
from ecgstream.processing import StreamProcessor
from ecgstream.settings import Settings

log = logging.getLogger("ecgstream.consumer")

FETCH_AHEAD = 2  # batches fetched and processed while the oldest waits for its acks
CLASSIFY_TIMEOUT_S = 30.0


class ServeClassifier:
    """The engine's classifier port over the lane's Serve application. A request that gets no
    answer in CLASSIFY_TIMEOUT_S fails (and is retried by the engine, counted under
    `classify`) rather than holding the consumer's partitions forever."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def classify(self, windows: np.ndarray, rr: np.ndarray) -> Any:
        from serve_app.inference import BeatBatch

        response = self._handle.remote(BeatBatch(windows, rr))
        try:
            return await asyncio.wait_for(_awaited(response), CLASSIFY_TIMEOUT_S)
        except TimeoutError:
            response.cancel()
            raise


async def _awaited(response: Any) -> Any:
    return await response


@ray.remote(num_cpus=0.5, max_restarts=0)
class ConsumerActor:
    def __init__(
        self,
        name: str,
        settings_json: str,
        model_dir: str | None = None,
        lane: str = "production",
    ) -> None:
        self.name = name
        self._settings = Settings.from_json(settings_json)
        self._lane = lane_named(lane, self._settings.topics)
        artifact = load_artifact(None if model_dir is None else Path(model_dir))
        self._processor = StreamProcessor(
            artifact.preprocess, verifier=device_verifier(self._settings)
        )
        self._clients = AsyncExitStack()
        self._engine: DeliveryEngine | None = None
        self._fetcher: PartitionFetcher | None = None
        self._feed: MonitorFeed | None = None
        self._delivering: asyncio.Task | None = None
        self._stop_delivering = asyncio.Event()
        self._idle_reports: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # assignment, pause and drain wait for each other
        self._paused = False
        self._halted: str | None = None
        self._failpoint: tuple[str, int] | None = None
        self._recent: deque[tuple[float, int]] = deque(maxlen=120)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        import asyncpg
        from ray import serve

        settings, lane, clients = self._settings, self._lane, self._clients
        consumer = await clients.enter_async_context(
            make_consumer(
                settings,
                group_id=lane.consumer_group,
                max_poll_records=settings.pipeline.max_batch_chunks,
                fetch_max_wait_ms=settings.kafka.batch_wait_ms,
                fetch_min_bytes=settings.kafka.batch_min_bytes,
            )
        )
        pool = await clients.enter_async_context(
            asyncpg.create_pool(
                settings.postgres_dsn("sink"), min_size=1, max_size=2, command_timeout=30
            )
        )
        self._fetcher = PartitionFetcher(
            consumer,
            lane.samples_topic,
            start_at_end=lane.mirrors_live,
            lookback_s=settings.pipeline.lookback_s,
            max_records=settings.pipeline.max_batch_chunks,
        )
        postgres = PostgresSink(pool, beats_table=lane.beats_table)
        new_sink = lambda p: KafkaSink(settings, p, beats_topic=lane.beats_topic)  # noqa: E731
        committer: Committer = self._fetcher
        if settings.kafka.transactions:  # Kafka after PostgreSQL, with the offsets, in one txn
            committer = TransactionalKafkaCommitter(
                lambda: transactional_producer(settings, self.name),
                new_sink,
                lane.samples_topic,
                lane.consumer_group,
            )
            clients.push_async_callback(committer.close)
            sinks: list[Sink] = [postgres]
        else:  # both sinks at once, then the offsets: at-least-once Kafka outputs
            producer = await clients.enter_async_context(make_producer(settings))
            sinks = [new_sink(producer), postgres]
        retries = lambda: sum(self._engine.retries.values()) if self._engine else 0  # noqa: E731
        self._feed = MonitorFeed(self._fetcher.lag, retries) if lane.feeds_monitor else None
        self._engine = DeliveryEngine(
            self._fetcher,
            self._processor,
            ServeClassifier(serve.get_app_handle(lane.serve_app)),
            sinks,
            committer,
            self._feed,
            emits_alarms=lane.raises_alarms,
            on_step=self._on_step,
        )
        if self._feed is not None:
            self._idle_reports = asyncio.create_task(self._report_lag_while_idle())
        return self.name

    async def stop(self) -> None:
        """Drain (finish and commit what was fetched), then close every client."""
        await self.drain()
        if self._idle_reports is not None:
            self._idle_reports.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_reports
        await self._clients.aclose()

    async def drain(self) -> dict[str, Any]:
        """`stream down`: finish and commit the batches in flight, fetch nothing more."""
        async with self._lock:
            self._paused = True
            await self._stop_delivery()
        return await self.stats()

    async def ping(self) -> str:
        return self.name

    # -- assignment --------------------------------------------------------------------------

    async def assign(self, partitions: list[int]) -> list[int]:
        """Own exactly these partitions from now on (rebuilding state for new ones); a revoked
        partition's batches are written and committed before it goes."""
        assert self._fetcher is not None, "start() first"
        async with self._lock:
            await self._stop_delivery()
            dropped = await self._fetcher.assign(partitions)
            self._processor.forget_partitions(dropped)
            self._start_delivery()
            return sorted(self._fetcher.assigned)

    async def pause(self) -> None:
        """Stop fetching after the batches in flight are written and committed; keep state."""
        async with self._lock:
            self._paused = True
            await self._stop_delivery()

    async def resume(self) -> None:
        """Fetch again; after a halt, once its cause is fixed, this is the retry."""
        async with self._lock:
            if self._halted is not None:
                await self._rebuild()
            self._paused, self._halted = False, None
            self._start_delivery()

    async def _rebuild(self) -> None:
        """After a halt the fetch position and the devices' state are ahead of the committed
        offsets (batches were fetched ahead and dropped): start the partitions over from
        their commits, as a new owner would (look-back replay)."""
        assert self._fetcher is not None
        owned = sorted(self._fetcher.assigned)
        self._processor.forget_partitions(await self._fetcher.assign([]))
        await self._fetcher.assign(owned)

    def _start_delivery(self) -> None:
        running = self._delivering is not None and not self._delivering.done()
        if not running and not self._paused and self._halted is None:
            self._stop_delivering = asyncio.Event()
            self._delivering = asyncio.create_task(self._deliver(self._stop_delivering))

    async def _stop_delivery(self) -> None:
        if self._delivering is not None:
            self._stop_delivering.set()
            await self._delivering
            self._delivering = None

    async def _deliver(self, stop: asyncio.Event) -> None:
        assert self._engine is not None
        try:
            await self._engine.run(stop, depth=FETCH_AHEAD)
        except DeliveryHaltedError as exc:
            self._halted = str(exc)
            log.error("delivery halted, partitions %s not consumed: %s", self._owned(), exc)

    async def _report_lag_while_idle(self) -> None:
        assert self._feed is not None
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self._feed.report_lag_if_due()

    # -- fault injection (chaos tests) -------------------------------------------------------

    async def arm_failpoint(self, step: str, after_batches: int = 0) -> None:
        """Kill this process (no cleanup, as a SIGKILL would) at the engine's `step` boundary
        once `after_batches` more batches are committed: e.g. "written" is after both sinks
        acknowledged a batch and before its offsets are committed."""
        assert self._engine is not None
        self._failpoint = (step, self._engine.counts["batches"] + after_batches)

    def _on_step(self, step: str) -> None:
        if step == "committed" and self._engine is not None:
            self._recent.append((time.monotonic(), self._engine.counts["beats"]))
        if self._failpoint is not None and self._engine is not None:
            armed_step, at_batches = self._failpoint
            if step == armed_step and self._engine.counts["batches"] >= at_batches:
                log.warning("failpoint %s reached: exiting", step)
                os._exit(17)

    # -- observability -----------------------------------------------------------------------

    def _owned(self) -> list[int]:
        return sorted(self._fetcher.assigned) if self._fetcher is not None else []

    async def stats(self) -> dict[str, Any]:
        engine = self._engine
        counts = engine.counts if engine is not None else {}
        now = time.monotonic()
        recent = [(t, n) for t, n in self._recent if now - t <= 10]
        # each entry is (commit time, beats counted before that batch)
        beats_per_s = (counts.get("beats", 0) - recent[0][1]) / 10.0 if recent else 0.0
        lag = await self._fetcher.lag() if self._fetcher is not None else {}
        lag_s = self._fetcher.lag_seconds(lag) if self._fetcher is not None else {}
        return {
            "name": self.name,
            "started": self._fetcher is not None,
            "node_id": ray.get_runtime_context().get_node_id(),
            "partitions": self._owned(),
            "lag": lag,
            "lag_s": lag_s,  # seconds of input waiting; None while a look-back is re-read
            "devices": self._processor.devices,
            "beats_per_s": beats_per_s,
            "paused": self._paused,
            "transactions": self._settings.kafka.transactions,
            "halted": self._halted,
            "stage_seconds": (
                {k: round(v, 3) for k, v in engine.stage_s.items()} if engine else {}
            ),
            "retries_by_step": dict(engine.retries) if engine else {},
            "monitor_dropped": self._feed.dropped if self._feed is not None else 0,
            "retries": sum(engine.retries.values()) if engine else 0,
            **{
                key: counts.get(key, 0)
                for key in (
                    "chunks",
                    "beats",
                    "alarms",
                    "dead_letters",
                    "duplicates",
                    "sessions",
                    "batches",
                )
            },
        }
