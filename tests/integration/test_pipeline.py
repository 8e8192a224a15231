"""The streaming pipeline end to end on the real stack: Kafka -> Ray actors -> Ray Serve ->
Kafka + PostgreSQL, compared with the same code run offline in this process."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import ray

from actors.pipeline import coordinator_handle, monitor_handle, stream_down, stream_up
from ecgstream.artifact import load_artifact
from ecgstream.io.kafka import make_consumer, make_producer
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import load_record
from ecgstream.settings import Settings
from ecgstream.tools.replay import malformed_messages, plan_devices, replay
from ecgstream.wire import encode_chunk, make_chunk

RECORDS = ["119", "208", "101"]


@pytest.fixture(scope="module")
def pipeline(settings: Settings) -> Iterator[Settings]:
    stream_up(settings, consumers=2, replicas=1)
    try:
        yield settings
    finally:
        stream_down(settings)
        ray.shutdown()


@dataclass(frozen=True)
class Expected:
    beats: dict[tuple[str, int], str]  # (device, sample) -> label
    alarms: set[str]


def offline_reference(
    settings: Settings, mitdb: Path, patients: int, duration_s: float, prefix: str
) -> Expected:
    """The same chunks through the same processor in this process, with local inference."""
    model = load_artifact()
    loaded = {name: load_record(mitdb, name) for name in RECORDS}
    seconds = {name: r.n_samples / r.fs for name, r in loaded.items()}
    processor = StreamProcessor(model.preprocess)
    beats: dict[tuple[str, int], str] = {}
    alarms: set[str] = set()
    for device in plan_devices(RECORDS, patients, seconds, prefix):
        record = loaded[device.record]
        messages = []
        for tick in range(int(duration_s)):
            begin = device.start_sample + tick * 360
            chunk = make_chunk(
                device_id=device.device_id,
                patient_id=device.patient_id,
                seq=tick,
                first_sample=begin,
                start_time=0.0,
                fs=record.fs,
                lead_names=record.lead_names,
                adc_gain=record.adc_gain,
                adc_baseline=record.adc_baseline,
                samples=record.digital[:, begin : begin + 360],
            )
            messages.append(InputMessage(0, tick, None, encode_chunk(chunk), 0))
        ingested = processor.ingest(messages)
        windows = np.stack([b.window for b in ingested.beats])
        rr = np.stack([b.rr for b in ingested.beats])
        results, events = processor.complete(
            ingested.beats, model.predict_proba(windows, rr), model.classes, model.version, 0
        )
        beats.update({(r.device_id, r.sample): r.label for r in results})
        alarms.update(e.alarm.alarm_id for e in events)
    return Expected(beats, alarms)


async def _stored(settings: Settings, prefix: str) -> tuple[dict, list[str]]:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        rows = await conn.fetch(
            "SELECT device_id, sample_index, label FROM beats WHERE device_id LIKE $1",
            f"{prefix}-%",
        )
        alarm_rows = await conn.fetch(
            "SELECT alarm_id FROM alarms WHERE device_id LIKE $1", f"{prefix}-%"
        )
    finally:
        await conn.close()
    return {(r["device_id"], r["sample_index"]): r["label"] for r in rows}, [
        r["alarm_id"] for r in alarm_rows
    ]


async def _wait_for(settings: Settings, prefix: str, count: int, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    stored: dict = {}
    while time.monotonic() < deadline:
        stored, _ = await _stored(settings, prefix)
        if len(stored) >= count:
            await asyncio.sleep(2)  # anything late would be a duplicate or an extra
            return (await _stored(settings, prefix))[0]
        await asyncio.sleep(1)
    return stored


async def _topic_messages(settings: Settings, topic: str, timeout_s: float = 20) -> list:
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and out:
                break
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def _kafka_beats(messages: list, prefix: str) -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = {}
    for m in messages:
        beat = json.loads(m.value)
        if beat["device"].startswith(f"{prefix}-"):
            by_id.setdefault(beat["beat_id"], []).append(beat["label"])
    return by_id


async def test_replay_gives_the_offline_beats_in_kafka_and_postgres(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:6]}"
    expected = offline_reference(pipeline, mitdb_dir, 3, 120, prefix)
    assert len(expected.beats) > 300
    await replay(pipeline, mitdb_dir, RECORDS, 3, speed=0, duration_s=120, prefix=prefix)

    stored = await _wait_for(pipeline, prefix, len(expected.beats))
    assert stored == expected.beats  # same beats, same classes, each once
    _, alarms = await _stored(pipeline, prefix)
    assert sorted(alarms) == sorted(expected.alarms)

    in_kafka = _kafka_beats(await _topic_messages(pipeline, pipeline.topics.beats), prefix)
    assert {k: v[0] for k, v in in_kafka.items()} == {
        f"{d}:{s}": label for (d, s), label in expected.beats.items()
    }
    # the monitor received the window statistics of every chunk (3 devices x 120 s)
    received = ray.get(monitor_handle().received_for.remote(f"{prefix}-"), timeout=60)
    assert received == 3 * 120


async def test_killing_a_consumer_loses_and_doubles_nothing(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    prefix = f"kill{uuid.uuid4().hex[:6]}"
    duration = 240
    expected = offline_reference(pipeline, mitdb_dir, 4, duration, prefix)
    feeding = asyncio.create_task(
        replay(pipeline, mitdb_dir, RECORDS, 4, speed=40, duration_s=duration, prefix=prefix)
    )
    await asyncio.sleep(3)  # mid-replay
    status = ray.get(coordinator_handle().status.remote(), timeout=60)
    victim = next(c["name"] for c in status["consumers"] if c.get("devices"))
    ray.kill(ray.get_actor(victim, namespace=pipeline.ray.namespace), no_restart=True)
    await feeding

    stored = await _wait_for(pipeline, prefix, len(expected.beats), timeout_s=240)
    # every beat exactly once (the primary key forbids doubles; none may be missing)
    assert set(stored) == set(expected.beats)
    agreement = np.mean([stored[k] == expected.beats[k] for k in expected.beats])
    assert agreement > 0.99  # state rebuilt from a 120 s look-back, not from the start

    _, alarms = await _stored(pipeline, prefix)
    assert len(alarms) == len(set(alarms))
    kafka = _kafka_beats(await _topic_messages(pipeline, pipeline.topics.beats), prefix)
    assert set(kafka) == {f"{d}:{s}" for d, s in expected.beats}  # duplicates share a key
    status = ray.get(coordinator_handle().status.remote(), timeout=60)
    assert victim not in status["assignment"]
    assert sorted(p for ps in status["assignment"].values() for p in ps) == status["partitions"]


async def test_malformed_messages_go_to_the_dead_letter_topic(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    bad = malformed_messages()
    producer = make_producer(pipeline, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for _name, payload in bad:
            await producer.send_and_wait(pipeline.topics.samples, payload, key=b"dev-bad")
    finally:
        await producer.stop()
    # the pipeline goes on: a good device after the bad messages is processed
    prefix = f"after{uuid.uuid4().hex[:6]}"
    await replay(pipeline, mitdb_dir, ["101"], 1, speed=0, duration_s=30, prefix=prefix)
    assert len(await _wait_for(pipeline, prefix, 25, timeout_s=120)) >= 25

    letters = await _topic_messages(pipeline, pipeline.topics.deadletter)
    reasons = [dict(m.headers)["reason"].decode() for m in letters]
    for name, _payload in bad:
        assert name in reasons, f"no dead letter with reason {name}"
    status = ray.get(coordinator_handle().status.remote(), timeout=60)
    assert sum(c.get("dead_letters", 0) for c in status["consumers"]) >= len(bad)
