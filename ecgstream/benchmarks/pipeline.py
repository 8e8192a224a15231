"""`ecgstream bench pipeline`: the pipeline's throughput beside two baselines in the same run.

- bare model: the classifier alone on pre-cut beats, in this process (the ceiling);
- single process: what a user would write instead: one aiokafka consumer that decodes,
  preprocesses, classifies and writes Kafka + PostgreSQL in a loop (same code, same outputs);
- pipeline: ecgstream end to end (Kafka -> actors -> Serve -> Kafka + PostgreSQL).

All three see the same records, patients and durations. Lost and doubled beats are counted
against the same chunks run through the same processor offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import torch
from aiokafka.admin import NewTopic

from ecgstream.artifact import ModelArtifact, load_artifact
from ecgstream.benchmarks._compute_floor import compute_floor
from ecgstream.benchmarks._process_cpu import CpuMeter, monitor_vs_consumer
from ecgstream.benchmarks._reference import offline_reference
from ecgstream.io.device_keys import device_verifier
from ecgstream.io.device_simulator import ReplayStats, replay
from ecgstream.io.kafka import make_admin, make_consumer, make_producer
from ecgstream.io.partition_fetcher import input_message
from ecgstream.io.sinks import KafkaSink, PostgresSink
from ecgstream.processing import StreamProcessor
from ecgstream.settings import Settings

# "no lag growth": over the second half of a load the fitted backlog may grow by at most this
# many seconds of input (below that it is the noise of batches in flight, not a trend)
LAG_GROWTH_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class Workload:
    records: tuple[str, ...]
    patients: int
    duration_s: float


def bare_model_beats_per_s(model: ModelArtifact, settings: Settings, batch: int = 256) -> float:
    from ecgstream.dataset import record_beats

    beats = record_beats(settings.records_dir, "208", model.preprocess)
    windows, rr = beats.windows, beats.rr
    torch.set_num_threads(1)  # as one Serve replica runs it
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for begin in range(0, len(windows), batch):
            model.predict_proba(windows[begin : begin + batch], rr[begin : begin + batch])
        best = min(best, time.perf_counter() - started)
    return len(windows) / best


async def publish_workload(settings: Settings, workload: Workload, prefix: str) -> ReplayStats:
    """The whole workload at full speed (throughput runs time its consumption)."""
    return await replay(
        settings,
        settings.records_dir,
        workload.records,
        workload.patients,
        speed=0,
        duration_s=workload.duration_s,
        prefix=prefix,
    )


async def replay_realtime(
    settings: Settings, patients: int, seconds: float, prefix: str
) -> ReplayStats:
    """`patients` devices playing the latency records at 1x (real-time and soak runs)."""
    return await replay(
        settings,
        settings.records_dir,
        LATENCY_RECORDS,
        patients,
        speed=1.0,
        duration_s=seconds,
        prefix=prefix,
    )


async def _stored(settings: Settings, prefix: str) -> tuple[int, int]:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (device_id, session_id, sample_index)) AS d "
            "FROM beats WHERE device_id LIKE $1",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    return int(row["n"]), int(row["d"])


async def _wait_stored(settings: Settings, prefix: str, count: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored, _ = await _stored(settings, prefix)
        if stored >= count:
            return time.monotonic()
        await asyncio.sleep(0.2)
    return float("nan")


async def single_process(settings: Settings, workload: Workload, prefix: str) -> dict[str, Any]:
    """The baseline: its own input topic, one consumer, the same processing and sinks."""
    topic = f"ecg.bench.{uuid.uuid4().hex[:8]}"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.topics.partitions, 1)])
    finally:
        await admin.close()
    bench_settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"samples": topic})}
    )
    stats = await publish_workload(bench_settings, workload, prefix)
    model = load_artifact()
    torch.set_num_threads(2)
    processor = StreamProcessor(model.preprocess, verifier=device_verifier(settings))
    consumer = make_consumer(settings, topic, group_id=f"bench-{prefix}", role="admin")
    producer = make_producer(settings, "admin")
    pool = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)
    await consumer.start()
    await producer.start()
    kafka_sink, pg_sink = KafkaSink(settings, producer), PostgresSink(pool)
    consumed, beats = 0, 0
    started = time.monotonic()
    try:
        while consumed < stats.chunks:
            batch = await consumer.getmany(timeout_ms=500, max_records=400)
            messages = [input_message(r) for records in batch.values() for r in records]
            consumed += len(messages)
            results, alarms = processor.complete_with(
                processor.ingest(messages),
                model.predict_proba,
                model.classes,
                model.version,
                time.time() * 1000,
            )
            await kafka_sink.send(results, alarms, [], model.classes)
            await pg_sink.insert(results, alarms)
            await consumer.commit()
            beats += len(results)
        seconds = time.monotonic() - started
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()
    return {"beats": beats, "seconds": seconds, "beats_per_s": beats / seconds, "chunks": consumed}


async def pipeline_run(
    settings: Settings, workload: Workload, prefix: str, coordinator: Any
) -> dict[str, Any]:
    """The same measurement as the baseline's: the workload is published first (the consumers
    are paused meanwhile), then timed from resume until every beat is stored."""
    expected = set(
        offline_reference(
            settings.records_dir, workload.records, workload.patients, workload.duration_s, prefix
        ).beats
    )
    await coordinator.pause.remote()
    try:
        published = await publish_workload(settings, workload, prefix)
    finally:
        started = time.monotonic()
        meter = CpuMeter().start()
        await coordinator.resume.remote()
    finished = await _wait_stored(settings, prefix, len(expected), timeout_s=900)
    meter.stop()
    await asyncio.sleep(2)  # late arrivals would be doubles or extras
    stored, distinct = await _stored(settings, prefix)
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        rows = await conn.fetch(
            "SELECT device_id, sample_index FROM beats WHERE device_id LIKE $1", f"{prefix}-%"
        )
    finally:
        await conn.close()
    keys = {(r["device_id"], r["sample_index"]) for r in rows}
    seconds = finished - started
    return {
        "beats": stored,
        "seconds": seconds,
        "beats_per_s": len(expected) / seconds,
        "lost": len(expected - keys),
        "extra": len(keys - expected),
        "duplicates": stored - distinct,
        "chunks": published.chunks,
        "cpu_seconds": meter.seconds,
        "monitor_vs_consumer_cpu": monitor_vs_consumer(meter),
    }


async def _pipeline_without_transactions(settings: Settings, workload: Workload) -> dict[str, Any]:
    """One throughput run with the consumers restarted without Kafka transactions (outputs
    at-least-once), then restarted as they were: the transactions' cost, in the same run."""
    from actors.pipeline import coordinator_handle

    kafka = settings.kafka.model_copy(update={"transactions": False})
    coordinator = coordinator_handle()
    await coordinator.reconfigure.remote(settings.model_copy(update={"kafka": kafka}).to_json())
    try:
        return await pipeline_run(settings, workload, f"bplain{uuid.uuid4().hex[:6]}", coordinator)
    finally:
        await coordinator.reconfigure.remote(settings.to_json())


async def wait_quiet(coordinator: Any, quiet_s: float = 3.0, timeout_s: float = 300.0) -> float:
    """Wait until the consumers have processed nothing for `quiet_s` and lag nowhere: a
    consumer restarted by a reconfiguration rebuilds its devices from the look-back (the bulk
    throughput workloads, tens of thousands of chunks), and a real-time run started meanwhile
    would measure that rebuild, not the load. Returns the seconds waited."""
    started = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - started < timeout_s:
        status = await coordinator.status.remote()
        consumers = status["consumers"]
        chunks = sum(c.get("chunks", 0) for c in consumers)
        lagging = any(v for c in consumers for v in (c.get("lag") or {}).values())
        if chunks != last or lagging or not all(c.get("started") for c in consumers):
            last, since = chunks, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        await asyncio.sleep(0.5)
    return round(time.monotonic() - started, 1)


LATENCY_RECORDS = ("101", "106", "119", "208")
REALTIME_P99_LIMIT_MS = 1500.0


async def latency_percentiles(settings: Settings, prefix: str) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        row = await conn.fetchrow(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99,
                      count(*) AS n
               FROM beats WHERE device_id LIKE $1""",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    return {"beats": int(row["n"]), "p50": row["p50"], "p99": row["p99"]}


class LagProbe:
    """The pipeline group's lag on the input topic (messages published, not yet committed)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def __aenter__(self) -> LagProbe:
        self._admin = make_admin(self._settings)
        self._reader = make_consumer(self._settings, group_id=None, role="admin")
        await self._admin.start()
        await self._reader.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._reader.stop()
        await self._admin.close()

    async def lag(self) -> int:
        from ecgstream.lanes import lane

        committed = await self._admin.list_consumer_group_offsets(lane("production").consumer_group)
        topic = self._settings.topics.samples
        mine = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic}
        ends = await self._reader.end_offsets(list(mine))
        return sum(max(0, ends[tp] - offset) for tp, offset in mine.items())


async def realtime_run(settings: Settings, patients: int, seconds: float) -> dict[str, Any]:
    """`patients` devices at 1x for `seconds`: the latency percentiles of their beats and the
    input lag sampled every second (does the pipeline keep up, or does the backlog grow?)."""
    prefix = f"rt{uuid.uuid4().hex[:6]}"
    samples: list[tuple[float, int]] = []
    meter = CpuMeter().start()
    async with LagProbe(settings) as probe:
        feeding = asyncio.create_task(replay_realtime(settings, patients, seconds, prefix))
        started = time.monotonic()
        while not feeding.done():
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                samples.append((time.monotonic() - started, await probe.lag()))
        published = await feeding
        meter.stop()  # the input's span: what the roles spend to keep up with it
        drained_at = float("nan")
        for _ in range(60):  # how long the backlog takes to drain after the input stops
            if await probe.lag() == 0:
                drained_at = time.monotonic() - started
                break
            await asyncio.sleep(0.5)
    await asyncio.sleep(2)
    latency = await latency_percentiles(settings, prefix)
    lags = np.array([lag for _, lag in samples], dtype=float)
    times = np.array([t for t, _ in samples], dtype=float)
    # growth: the fitted slope over the second half (after warm-up), in messages per second,
    # against the input rate: a pipeline that keeps up has a slope near zero
    half = times >= times[-1] / 2 if len(times) else np.zeros(0, bool)
    slope = float(np.polyfit(times[half], lags[half], 1)[0]) if half.sum() >= 3 else float("nan")
    input_rate = published.chunks / max(published.seconds, 1e-9)
    p99 = latency["p99"]
    keeps_up = (
        p99 is not None
        and p99 < REALTIME_P99_LIMIT_MS
        and math.isfinite(slope)
        and slope * seconds / 2 <= LAG_GROWTH_TOLERANCE_S * input_rate
        and latency["beats"] > 0
    )
    return {
        "patients": patients,
        "seconds": seconds,
        "chunks": published.chunks,
        "input_chunks_per_s": round(input_rate, 1),
        "publish_seconds": round(published.seconds, 1),
        "beats": latency["beats"],
        "latency_p50_ms": None if latency["p50"] is None else round(latency["p50"], 1),
        "latency_p99_ms": None if p99 is None else round(p99, 1),
        "lag_max": int(lags.max()) if len(lags) else None,
        "lag_slope_per_s": round(slope, 2),
        "drained_after_s": round(drained_at - seconds, 1),
        "keeps_up": keeps_up,
        "cpu_seconds": meter.seconds,
        "monitor_vs_consumer_cpu": monitor_vs_consumer(meter),
    }


async def find_realtime_patients(
    settings: Settings,
    start: int,
    maximum: int,
    seconds: float,
    on_step: Callable[[str], None] = lambda step: None,
) -> tuple[int | None, list[dict[str, Any]]]:
    """Double the patients from `start` while the pipeline keeps up, then bisect twice between
    the last load it kept up with and the first it did not."""
    runs: list[dict[str, Any]] = []

    async def attempt(patients: int) -> bool:
        on_step(f"real time: {patients} patients for {seconds:.0f} s")
        run = await realtime_run(settings, patients, seconds)
        runs.append(run)
        await asyncio.sleep(5)  # let a backlog drain before the next load
        return bool(run["keeps_up"])

    best, failed = None, None
    patients = start
    while patients <= maximum:
        if not await attempt(patients):
            failed = patients
            break
        best = patients
        patients *= 2
    if best is not None and failed is not None:
        for _ in range(2):
            middle = (best + failed) // 2
            if middle in (best, failed):
                break
            if await attempt(middle):
                best = middle
            else:
                failed = middle
    return best, runs


@dataclass(frozen=True)
class RealtimeSearch:
    start: int = 250
    maximum: int = 4000
    seconds: float = 120.0


async def bench_pipeline(
    settings: Settings,
    workload: Workload,
    realtime: RealtimeSearch | None,
    latency_seconds: float,
    repeats: int = 3,
    fallback_latency_patients: int = 50,
    on_step: Callable[[str], None] = lambda step: None,
    compare_transactions: bool = False,
) -> dict[str, Any]:
    """Every figure of issue #5 in one run. Throughput runs alternate baseline and pipeline
    `repeats` times and report medians (this machine's speed drifts by 10-20 % minute to
    minute); the latency is measured at half the real-time capacity found."""
    from actors.pipeline import coordinator_handle

    on_step("bare model")
    bare = bare_model_beats_per_s(load_artifact(), settings)
    on_step("compute floor (the same workload, no I/O, one core)")
    floor = compute_floor(settings, workload.records, workload.patients, workload.duration_s)
    singles, pipes, plain = [], [], []
    compare_transactions = compare_transactions and settings.kafka.transactions
    for repeat in range(repeats):
        on_step(f"single-process baseline ({repeat + 1}/{repeats})")
        singles.append(await single_process(settings, workload, f"bsingle{uuid.uuid4().hex[:6]}"))
        on_step(f"pipeline ({repeat + 1}/{repeats})")
        pipes.append(
            await pipeline_run(
                settings, workload, f"bpipe{uuid.uuid4().hex[:6]}", coordinator_handle()
            )
        )
        if compare_transactions:
            on_step(f"pipeline without Kafka transactions ({repeat + 1}/{repeats})")
            plain.append(await _pipeline_without_transactions(settings, workload))
    single_rate = float(np.median([r["beats_per_s"] for r in singles]))
    pipe_rate = float(np.median([r["beats_per_s"] for r in pipes]))
    plain_rate = float(np.median([r["beats_per_s"] for r in plain])) if plain else None
    realtime_patients: int | None = None
    realtime_runs: list[dict[str, Any]] = []
    on_step("waiting for the consumers to finish the throughput runs' look-back")
    settled_s = await wait_quiet(coordinator_handle())
    if realtime is not None:
        realtime_patients, realtime_runs = await find_realtime_patients(
            settings, realtime.start, realtime.maximum, realtime.seconds, on_step
        )
    latency_patients = max(1, (realtime_patients or 2 * fallback_latency_patients) // 2)
    await wait_quiet(coordinator_handle())
    on_step(f"latency at half load: {latency_patients} patients for {latency_seconds:.0f} s")
    latency = await realtime_run(settings, latency_patients, latency_seconds)
    return {
        "bare_model_beats_per_s": round(bare, 1),
        "single_process_beats_per_s": round(single_rate, 1),
        "pipeline_beats_per_s": round(pipe_rate, 1),
        "realtime_patients": realtime_patients,
        "latency_p50_ms": latency["latency_p50_ms"],
        "latency_p99_ms": latency["latency_p99_ms"],
        "lost": sum(r["lost"] for r in pipes + plain),
        "duplicates": sum(r["duplicates"] for r in pipes + plain),
        "pipeline_vs_single_process": round(pipe_rate / single_rate, 2),
        "pipeline_vs_bare_model": round(pipe_rate / bare, 3),
        "compute_floor_beats_per_s": floor["beats_per_s"],
        "pipeline_vs_compute_floor": round(pipe_rate / floor["beats_per_s"], 3),
        "transactions": settings.kafka.transactions,
        "pipeline_without_transactions_beats_per_s": (
            None if plain_rate is None else round(plain_rate, 1)
        ),
        "transactions_vs_without": None if plain_rate is None else round(pipe_rate / plain_rate, 3),
        "cpus": settings.local.ray_num_cpus if settings.ray.address is None else None,
        # at the most patients kept up with (the load the goal is about), else at the latency load
        "monitor_vs_consumer_cpu": next(
            (
                r["monitor_vs_consumer_cpu"]
                for r in sorted(realtime_runs, key=lambda r: -r["patients"])
                if r["keeps_up"]
            ),
            latency["monitor_vs_consumer_cpu"],
        ),
        "details": {
            "workload": {
                "records": list(workload.records),
                "patients": workload.patients,
                "seconds_per_patient": workload.duration_s,
                "repeats": repeats,
            },
            "compute_floor": floor,
            "settled_before_realtime_s": settled_s,
            "compute_floor_definition": "decode + signature check + preprocessing + model "
            "(one thread) + alarm rules of the same workload in one process with no I/O, "
            "beats/s of one core times the cores the pipeline's Ray cluster has",
            "single_process_runs": singles,
            "pipeline_runs": pipes,
            "pipeline_runs_without_transactions": plain,
            "realtime_runs": realtime_runs,
            "latency_load": latency,
            "realtime_definition": (
                f"most patients replayed at 1x for the stated seconds with p99 latency under "
                f"{REALTIME_P99_LIMIT_MS:.0f} ms and an input lag whose fitted growth over the "
                f"second half is at most {LAG_GROWTH_TOLERANCE_S:.0f} s of input; doubling "
                "from the start load, then two bisection steps"
                if realtime is not None
                else "not measured (--no-realtime)"
            ),
            "cpu_definition": "CPU seconds per role of the local stack's processes (/proc) "
            "over a run: the throughput runs from resume to the last beat stored, the real-time "
            "runs over the input's span; monitor_vs_consumer_cpu is the monitor's over one "
            "consumer's, at the most patients kept up with in real time (else at the latency "
            "load; none for a remote Ray cluster)",
            "latency_definition": "Kafka timestamp of the chunk that completed the beat to its "
            "classification (beats.latency_ms)",
            "throughput_definition": "the workload is published first, then timed from the "
            "start of consumption until its last beat is stored (both baseline and pipeline); "
            "medians of the repeats",
        },
    }
