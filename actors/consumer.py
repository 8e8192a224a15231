"""Consumer actor: owns some partitions of `ecg.samples` and everything about their devices.

The order of the steps is the delivery guarantee:

    fetch -> decode/process -> classify (Serve) -> write Kafka + PostgreSQL -> commit offsets

Offsets are committed only after both writes are acknowledged, so a crash anywhere before the
commit means the batch is read again; the sinks' keys make the second write a no-op. A failing
step is retried (with backoff); the writes run one batch behind the processing through a queue
of WRITE_QUEUE_DEPTH batches, so the CPU works on batch n+1 while batch n waits for its acks,
and a slow or absent database or model stops the fetching instead of filling memory. Batches
are written and committed in order, by one writer task.

When a partition is handed to this actor it rebuilds the state of its devices by re-reading a
bounded look-back (by timestamp) before the committed offset; those messages are processed
with their outputs suppressed (they were written by the previous owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from aiokafka import TopicPartition

from actors.lanes import lane as lane_named
from actors.monitor import MONITOR_NAME
from actors.naming import namespace
from ecgstream.aami import MODEL_CLASSES
from ecgstream.artifact import load_artifact
from ecgstream.io.kafka import make_consumer, make_producer
from ecgstream.io.sinks import KafkaSink, PostgresSink
from ecgstream.monitoring.drift import summary_features
from ecgstream.monitoring.fleet import BeatSummary
from ecgstream.monitoring.metrics import ConsumerReport
from ecgstream.processing import (
    InputMessage,
    PendingAlarm,
    PendingBeat,
    PendingTick,
    StreamProcessor,
)
from ecgstream.settings import Settings
from ecgstream.signal.chunk_stats import WindowStats

log = logging.getLogger("ecgstream.consumer")

LOOKBACK_S = 120.0
MAX_RECORDS = 1000
MONITOR_WAIT_S = 2.0
WRITE_QUEUE_DEPTH = 2
LAG_REPORT_S = 5.0


@dataclass
class WriteJob:
    """One ingested batch waiting for classification, its writes and its commit."""

    pending: list[PendingBeat]
    letters: list
    ends: dict
    chunks: int
    duplicates: int
    windows: list[WindowStats]
    ticks: list[PendingTick] = field(default_factory=list)
    technical: list[PendingAlarm] = field(default_factory=list)  # sensor faults, with the beats


@ray.remote(num_cpus=0.5, max_restarts=0)
class ConsumerActor:
    def __init__(
        self,
        name: str,
        settings_json: str,
        model_dir: str | None = None,
        lane: str = "production",
    ) -> None:
        from ray import serve

        self.name = name
        self._settings = Settings.from_json(settings_json)
        self._lane = lane_named(lane, self._settings.topics)
        artifact = load_artifact(None if model_dir is None else Path(model_dir))
        self._processor = StreamProcessor(artifact.preprocess)
        self._handle = serve.get_app_handle(self._lane.serve_app)
        self._assigned: set[int] = set()
        self._replay_until: dict[int, int] = {}
        self._task: asyncio.Task | None = None
        self._writer: asyncio.Task | None = None
        self._writes: asyncio.Queue[WriteJob] = asyncio.Queue(maxsize=WRITE_QUEUE_DEPTH)
        self._paused = False
        self._lock = asyncio.Lock()  # assignment changes wait for the in-flight batch
        self._stats: dict[str, Any] = {
            "chunks": 0,
            "beats": 0,
            "alarms": 0,
            "dead_letters": 0,
            "duplicates": 0,
            "retries": 0,
            "batches": 0,
            "monitor_dropped": 0,
        }
        # seconds spent per step (wall; ingest also in thread CPU time): where a batch's time goes
        self._stage_s: dict[str, float] = dict.fromkeys(
            ("ingest", "ingest_cpu", "classify", "write"), 0.0
        )
        self._recent: deque[tuple[float, int]] = deque(maxlen=120)
        self._consumer = None
        self._producer = None
        self._pool = None
        self._monitor: Any = None
        self._monitor_call: Any = None  # at most one call in flight
        self._reported_retries = 0
        self._lag_reported_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        import asyncpg

        settings = self._settings
        self._consumer = make_consumer(
            settings, group_id=self._lane.consumer_group, max_poll_records=MAX_RECORDS
        )
        self._producer = make_producer(settings)
        await self._consumer.start()
        await self._producer.start()
        self._pool = await asyncpg.create_pool(
            settings.postgres_dsn("sink"), min_size=1, max_size=2, command_timeout=30
        )
        self._kafka_sink = KafkaSink(settings, self._producer, beats_topic=self._lane.beats_topic)
        self._pg_sink = PostgresSink(self._pool, beats_table=self._lane.beats_table)
        self._task = asyncio.create_task(self._run())
        self._writer = asyncio.create_task(self._write_loop())
        return self.name

    async def stop(self) -> None:
        for task in (self._task, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for closer in (self._consumer, self._producer):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer.stop()
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> str:
        return self.name

    # -- assignment --------------------------------------------------------------------------

    async def assign(self, partitions: list[int]) -> list[int]:
        """Own exactly these partitions from now on (rebuilding state for new ones)."""
        async with self._lock:
            # a revoked partition's last batches are written and committed before it goes
            await self._writes.join()
            topic = self._lane.samples_topic
            wanted = set(partitions)
            added = wanted - self._assigned
            self._processor.forget_partitions(self._assigned - wanted)
            self._assigned = wanted
            tps = [TopicPartition(topic, p) for p in sorted(wanted)]
            self._consumer.assign(tps)
            for p in added:
                await self._seek_for_rebuild(TopicPartition(topic, p))
            return sorted(self._assigned)

    async def _seek_for_rebuild(self, tp: TopicPartition) -> None:
        committed = await self._consumer.committed(tp)
        if committed is None and self._lane.mirrors_live:
            # a new mirror starts at the live end (after a look-back to rebuild state), not
            # at the beginning of the topic's retention
            committed = (await self._consumer.end_offsets([tp]))[tp]
        if committed is None:
            beginning = await self._consumer.beginning_offsets([tp])
            self._consumer.seek(tp, beginning[tp])
            self._replay_until[tp.partition] = beginning[tp]
            return
        # the look-back: messages published up to LOOKBACK_S before the committed one
        start = committed
        with contextlib.suppress(Exception):
            self._consumer.seek(tp, max(0, committed - 1))
            previous = await asyncio.wait_for(self._consumer.getone(tp), timeout=5)
            wanted_ms = previous.timestamp - int(LOOKBACK_S * 1000)
            found = await self._consumer.offsets_for_times({tp: max(0, wanted_ms)})
            if found.get(tp) is not None:
                start = min(found[tp].offset, committed)
        self._consumer.seek(tp, start)
        self._replay_until[tp.partition] = committed

    async def pause(self) -> None:
        """Stop fetching after the in-flight batch is written and committed; keep state."""
        async with self._lock:
            self._paused = True
            await self._writes.join()

    async def resume(self) -> None:
        self._paused = False

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._assigned or self._paused:
                await asyncio.sleep(0.05)
                continue
            async with self._lock:
                if not self._assigned or self._paused:
                    continue  # changed while this loop waited for the lock
                try:
                    batch = await self._consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
                except Exception as exc:  # broker unreachable: back off and try again
                    log.warning("fetch failed: %s", type(exc).__name__)
                    self._stats["retries"] += 1
                    await asyncio.sleep(1.0)
                    continue
                if batch:
                    await self._process(batch)
                elif time.monotonic() - self._lag_reported_at >= LAG_REPORT_S:
                    # idle: the lag gauge must still say 0 (or how far behind a stall is)
                    self._lag_reported_at = time.monotonic()
                    report = ConsumerReport(lag_by_partition=await self._lag())
                    await self._send_to_monitor([], None, report)

    async def _process(self, batch: dict) -> None:
        messages: list[InputMessage] = []
        payloads: dict[tuple[int, int], bytes] = {}
        ends: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            if tp.partition not in self._assigned:
                continue
            until = self._replay_until.get(tp.partition, 0)
            for r in records:
                replay = r.offset < until
                messages.append(
                    InputMessage(tp.partition, r.offset, r.key, r.value, r.timestamp, replay)
                )
                payloads[(tp.partition, r.offset)] = r.value
            ends[tp] = records[-1].offset + 1
        if not messages:
            return
        started, cpu_started = time.perf_counter(), time.thread_time()
        ingested = self._processor.ingest(messages)
        self._stage_s["ingest"] += time.perf_counter() - started
        self._stage_s["ingest_cpu"] += time.thread_time() - cpu_started
        replayed = {(m.partition, m.offset) for m in messages if m.replay}
        letters = [
            (d, payloads[(d.partition, d.offset)])
            for d in ingested.dead_letters
            if (d.partition, d.offset) not in replayed
        ]
        await self._writes.put(
            WriteJob(
                ingested.beats,
                letters,
                ends,
                ingested.chunks,
                ingested.duplicates,
                ingested.windows,
                ingested.ticks,
                ingested.technical,
            )
        )

    async def _write_loop(self) -> None:
        while True:
            job = await self._writes.get()
            try:
                await self._write(job)
            finally:
                self._writes.task_done()

    async def _write(self, job: WriteJob) -> None:
        """Classify, raise alarms, write both outputs, commit: one batch at a time, in order."""
        pending = job.pending
        windows = rr = None
        served = 0
        if pending:
            windows = np.stack([b.window for b in pending])
            rr = np.stack([b.rr for b in pending])
            started = time.perf_counter()
            classified = await self._retry("classify", lambda: self._classify(windows, rr))
            self._stage_s["classify"] += time.perf_counter() - started
            probabilities, classes, version = (
                classified.probabilities,
                classified.classes,
                classified.model_version,
            )
            served = classified.batch_beats
        else:
            probabilities = np.zeros((0, len(MODEL_CLASSES)), np.float32)
            classes, version = MODEL_CLASSES, ""
        inhibited = self._processor.inhibited
        beats, alarms = self._processor.complete(
            pending, probabilities, classes, version, time.time() * 1000, job.ticks, job.technical
        )
        inhibited = self._processor.inhibited - inhibited
        letters = job.letters
        if not self._lane.raises_alarms:
            # a candidate's opinion never reaches a nurse; production dead-letters bad input
            alarms, letters = [], []
        started = time.perf_counter()
        await asyncio.gather(
            self._retry(
                "kafka write",
                lambda: self._kafka_sink.write(beats, alarms, letters, classes),
            ),
            self._retry("postgres write", lambda: self._pg_sink.write(beats, alarms)),
        )
        self._stage_s["write"] += time.perf_counter() - started
        await self._retry("commit", lambda: self._consumer.commit(job.ends))
        self._stats["batches"] += 1
        self._stats["chunks"] += job.chunks
        self._stats["beats"] += len(beats)
        self._stats["alarms"] += sum(not e.is_end for e in alarms)
        self._stats["dead_letters"] += len(job.letters)
        self._stats["duplicates"] += job.duplicates
        self._recent.append((time.monotonic(), len(beats)))
        live = [i for i, b in enumerate(pending) if not b.replay]
        summary = None
        if windows is not None and live:
            summary = BeatSummary(
                device_ids=[b.device_id for b in beats],
                labels=[b.label for b in beats],
                probabilities=probabilities[live],
                features=summary_features(windows[live], rr[live]),
                rr_prev_s=np.array([np.nan if b.rr_prev_s is None else b.rr_prev_s for b in beats]),
                stream_time=np.array([b.time_s for b in beats]),
            )
        await self._send_to_monitor(
            job.windows, summary, await self._report(job, beats, alarms, served, inhibited)
        )

    async def _report(
        self, job: WriteJob, beats: list, alarms: list, served: int, inhibited: int
    ) -> ConsumerReport:
        """This batch's counters for the monitor's metrics (lag every LAG_REPORT_S)."""
        retries = self._stats["retries"]
        report = ConsumerReport(
            chunks=job.chunks,
            duplicates=job.duplicates,
            retries=retries - self._reported_retries,
            beats_by_class=Counter(b.label for b in beats),
            latencies_s=[b.latency_ms / 1000 for b in beats],
            dead_letters_by_reason=Counter(letter.reason for letter, _ in job.letters),
            alarms_by_kind=Counter(
                (e.alarm.kind, e.alarm.category) for e in alarms if not e.is_end
            ),
            serve_batch_sizes=[served] if served else [],
            alarms_inhibited=inhibited,
            unanalysable_beats=sum(b.signal_fault is not None for b in beats),
        )
        self._reported_retries = retries
        if time.monotonic() - self._lag_reported_at >= LAG_REPORT_S:
            report.lag_by_partition = await self._lag()
            self._lag_reported_at = time.monotonic()
        return report

    async def _send_to_monitor(
        self, windows: list, beats: BeatSummary | None, report: ConsumerReport
    ) -> None:
        """Hand the batch's statistics to the monitor; the call runs in parallel with the next
        batch. At most one call is in flight: if the monitor has not taken the previous batch
        within MONITOR_WAIT_S, this batch's statistics are dropped and counted, never queued."""
        if not self._lane.feeds_monitor:
            return
        if not windows and beats is None and report.lag_by_partition is None:
            return
        if self._monitor_call is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._monitor_call), MONITOR_WAIT_S)
            except Exception:
                self._dropped(windows, report)
                self._monitor = None
                return
        if self._monitor is None:
            try:
                self._monitor = ray.get_actor(MONITOR_NAME, namespace=namespace())
            except ValueError:
                self._dropped(windows, report)
                return
        self._monitor_call = self._monitor.observe.remote(windows, beats, report)

    def _dropped(self, windows: list, report: ConsumerReport) -> None:
        self._stats["monitor_dropped"] += len(windows)
        if report.lag_by_partition is not None:
            self._lag_reported_at = 0.0  # send the lag again with the next batch

    async def _classify(self, windows: np.ndarray, rr: np.ndarray) -> Any:
        from serve_app.inference import BeatBatch

        return await self._handle.remote(BeatBatch(windows, rr))

    async def _retry(self, what: str, step: Any) -> Any:
        delay = 0.2
        while True:
            try:
                return await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._stats["retries"] += 1
                log.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- observability -----------------------------------------------------------------------

    async def _lag(self) -> dict[int, int]:
        topic = self._lane.samples_topic
        lag: dict[int, int] = {}
        if self._assigned and self._consumer is not None:
            tps = [TopicPartition(topic, p) for p in sorted(self._assigned)]
            with contextlib.suppress(Exception):
                ends = await asyncio.wait_for(self._consumer.end_offsets(tps), timeout=5)
                for tp in tps:
                    position = await self._consumer.position(tp)
                    lag[tp.partition] = max(0, ends[tp] - position)
        return lag

    async def stats(self) -> dict[str, Any]:
        lag = await self._lag()
        now = time.monotonic()
        window = [(t, n) for t, n in self._recent if now - t <= 10]
        beats_per_s = sum(n for _, n in window) / 10.0
        return {
            "name": self.name,
            "node_id": ray.get_runtime_context().get_node_id(),
            "partitions": sorted(self._assigned),
            "lag": lag,
            "devices": self._processor.devices,
            "beats_per_s": beats_per_s,
            "paused": self._paused,
            "stage_seconds": {k: round(v, 3) for k, v in self._stage_s.items()},
            **self._stats,
        }
