"""Shared pieces of the pipeline tests: the offline reference and readers of the outputs."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np

from ecgstream.artifact import load_artifact
from ecgstream.io.kafka import make_consumer
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import load_record
from ecgstream.settings import Settings
from ecgstream.tools.replay import plan_devices
from ecgstream.wire import encode_chunk, make_chunk

RECORDS = ["119", "208", "101"]


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


async def stored_outputs(settings: Settings, prefix: str) -> tuple[dict, list[str]]:
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


async def wait_for_beats(
    settings: Settings, prefix: str, count: int, timeout_s: float = 180
) -> dict:
    deadline = time.monotonic() + timeout_s
    stored: dict = {}
    while time.monotonic() < deadline:
        stored, _ = await stored_outputs(settings, prefix)
        if len(stored) >= count:
            await asyncio.sleep(2)  # anything late would be a duplicate or an extra
            return (await stored_outputs(settings, prefix))[0]
        await asyncio.sleep(1)
    return stored


async def topic_messages(settings: Settings, topic: str, timeout_s: float = 20) -> list:
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


def kafka_beats(messages: list, prefix: str) -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = {}
    for m in messages:
        beat = json.loads(m.value)
        if beat["device"].startswith(f"{prefix}-"):
            by_id.setdefault(beat["beat_id"], []).append(beat["label"])
    return by_id
