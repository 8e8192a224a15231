"""Shared pieces of the pipeline tests: the offline reference and readers of the outputs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg

from ecgstream.io.kafka import make_consumer
from ecgstream.settings import Settings
from ecgstream.tools.reference import ExpectedOutputs
from ecgstream.tools.reference import offline_reference as shared_reference

RECORDS = ["119", "208", "101"]


def offline_reference(
    mitdb: Path, patients: int, duration_s: float, prefix: str
) -> ExpectedOutputs:
    """What replaying RECORDS must produce (the same chunks through the same code, here)."""
    return shared_reference(mitdb, RECORDS, patients, duration_s, prefix)


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
