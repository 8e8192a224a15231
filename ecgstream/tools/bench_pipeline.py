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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import torch
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ecgstream.artifact import ModelArtifact, load_artifact
from ecgstream.io.kafka import make_consumer, make_producer
from ecgstream.io.sinks import KafkaSink, PostgresSink
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.settings import Settings
from ecgstream.tools.reference import offline_reference
from ecgstream.tools.replay import replay


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


async def _stored(settings: Settings, prefix: str) -> tuple[int, int]:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (device_id, sample_index)) AS d "
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
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, settings.topics.partitions, 1)])
    finally:
        await admin.close()
    bench_settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"samples": topic})}
    )
    stats = await replay(
        bench_settings,
        settings.records_dir,
        workload.records,
        workload.patients,
        speed=0,
        duration_s=workload.duration_s,
        prefix=prefix,
    )
    model = load_artifact()
    torch.set_num_threads(2)
    processor = StreamProcessor(model.preprocess)
    consumer = make_consumer(settings, topic, group_id=f"bench-{prefix}")
    producer = make_producer(settings)
    pool = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)
    await consumer.start()
    await producer.start()
    kafka_sink, pg_sink = KafkaSink(settings, producer), PostgresSink(pool)
    consumed, beats = 0, 0
    started = time.monotonic()
    try:
        while consumed < stats.chunks:
            batch = await consumer.getmany(timeout_ms=500, max_records=400)
            messages = [
                InputMessage(tp.partition, r.offset, r.key, r.value, r.timestamp)
                for tp, records in batch.items()
                for r in records
            ]
            consumed += len(messages)
            ingested = processor.ingest(messages)
            if ingested.beats:
                windows = np.stack([b.window for b in ingested.beats])
                rr = np.stack([b.rr for b in ingested.beats])
                proba = model.predict_proba(windows, rr)
            else:
                proba = np.zeros((0, len(model.classes)), np.float32)
            results, alarms = processor.complete(
                ingested.beats, proba, model.classes, model.version, time.time() * 1000
            )
            await kafka_sink.write(results, alarms, [], model.classes)
            await pg_sink.write(results, alarms)
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
        published = await replay(
            settings,
            settings.records_dir,
            workload.records,
            workload.patients,
            speed=0,
            duration_s=workload.duration_s,
            prefix=prefix,
        )
    finally:
        started = time.monotonic()
        await coordinator.resume.remote()
    finished = await _wait_stored(settings, prefix, len(expected), timeout_s=900)
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
    }


async def latency_run(settings: Settings, patients: int, seconds: float) -> dict[str, Any]:
    prefix = f"lat{uuid.uuid4().hex[:6]}"
    await replay(
        settings,
        settings.records_dir,
        ("101", "106", "119", "208"),
        patients,
        speed=1.0,
        duration_s=seconds,
        prefix=prefix,
    )
    await asyncio.sleep(5)
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
    return {"patients": patients, "beats": int(row["n"]), "p50": row["p50"], "p99": row["p99"]}


async def bench_pipeline(
    settings: Settings,
    workload: Workload,
    latency_patients: int,
    latency_seconds: float,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    on_step("bare model")
    bare = bare_model_beats_per_s(load_artifact(), settings)
    on_step("single-process baseline")
    single = await single_process(settings, workload, f"bsingle{uuid.uuid4().hex[:6]}")
    on_step("pipeline")
    from actors.pipeline import coordinator_handle

    prefix = f"bpipe{uuid.uuid4().hex[:6]}"
    pipe = await pipeline_run(settings, workload, prefix, coordinator_handle())
    on_step("latency at a steady real-time load")
    latency = await latency_run(settings, latency_patients, latency_seconds)
    return {
        "bare_model_beats_per_s": round(bare, 1),
        "single_process_beats_per_s": round(single["beats_per_s"], 1),
        "pipeline_beats_per_s": round(pipe["beats_per_s"], 1),
        "realtime_patients": None,
        "latency_p50_ms": None if latency["p50"] is None else round(latency["p50"], 1),
        "latency_p99_ms": None if latency["p99"] is None else round(latency["p99"], 1),
        "lost": pipe["lost"],
        "duplicates": pipe["duplicates"],
        "pipeline_vs_single_process": round(pipe["beats_per_s"] / single["beats_per_s"], 2),
        "pipeline_vs_bare_model": round(pipe["beats_per_s"] / bare, 3),
        "details": {
            "workload": {
                "records": list(workload.records),
                "patients": workload.patients,
                "seconds_per_patient": workload.duration_s,
            },
            "single_process": single,
            "pipeline": pipe,
            "latency_load": latency,
            "realtime_patients": "not measured yet: needs the 2-minute ramp of issue #5",
            "latency_definition": "Kafka timestamp of the chunk that completed the beat to its "
            "classification (beats.latency_ms), at the stated load",
            "throughput_definition": "the workload is published first, then timed from the "
            "start of consumption until its last beat is stored (both baseline and pipeline)",
        },
    }
