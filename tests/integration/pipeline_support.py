"""Shared pieces of the pipeline tests: the offline reference and readers of the outputs."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from pathlib import Path

import asyncpg
import numpy as np
import ray
import torch

from actors.pipeline import coordinator_handle
from ecgstream.artifact import load_artifact
from ecgstream.benchmarks._reference import ExpectedOutputs
from ecgstream.benchmarks._reference import offline_reference as shared_reference
from ecgstream.io.device_simulator import REPLAY_SESSION, replay
from ecgstream.io.kafka import make_consumer
from ecgstream.model import BeatClassifier
from ecgstream.settings import Settings

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
    consumer = make_consumer(settings, topic, group_id=None, role="admin")
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


async def assert_kafka_outputs_once(
    settings: Settings, prefix: str, beats: set[tuple[str, int]], alarm_ids: list[str]
) -> None:
    """What a read_committed subscriber reads: every stored beat and alarm, each once."""
    in_kafka = kafka_beats(await topic_messages(settings, settings.topics.beats), prefix)
    assert set(in_kafka) == {f"{d}:{REPLAY_SESSION}:{s}" for d, s in beats}  # replay's session
    doubled = sorted(k for k, labels in in_kafka.items() if len(labels) > 1)
    assert not doubled, f"{len(doubled)} beats read twice, e.g. {doubled[:3]}"
    raised = [
        alarm["alarm_id"]
        for alarm in map(
            json.loads, (m.value for m in await topic_messages(settings, settings.topics.alerts))
        )
        if alarm["device"].startswith(f"{prefix}-") and alarm["event"] == "raised"
    ]
    assert sorted(raised) == sorted(alarm_ids)


def assert_no_repeated_alarm(alarm_ids: list[str]) -> None:
    """One alarm per episode: an id at most once, and no kind raised twice for one device
    within a minute (a rebuilt state re-raising an episode it had already reported)."""
    assert len(alarm_ids) == len(set(alarm_ids))
    episodes = sorted(tuple(a.rsplit(":", 2)) for a in alarm_ids)
    for (device, kind, start), (device2, kind2, start2) in itertools.pairwise(episodes):
        if (device, kind) == (device2, kind2):
            assert int(start2) - int(start) > 60 * 360, f"{device} {kind} raised twice"


async def wait_for_zero_lag(timeout_s: float = 120) -> dict:
    """The pipeline drains its backlog by itself: the coordinator's status, once lag is 0 and
    what was fetched is delivered. `lag` counts messages not yet *fetched*; a consumer counts a
    batch's chunks only once it is committed, so the count standing still over a poll with no
    lag means the last batch fetched is stored too."""
    deadline = time.monotonic() + timeout_s
    previous = None
    while True:
        status = ray.get(coordinator_handle().status.remote(), timeout=120)
        lag = sum(sum(c["lag"].values()) for c in status["consumers"] if "lag" in c)
        delivered = sum(c.get("chunks", 0) for c in status["consumers"])
        if (lag == 0 and delivered == previous) or time.monotonic() > deadline:
            assert lag == 0, status
            return status
        previous = delivered if lag == 0 else None
        await asyncio.sleep(2)


async def replay_with_fault(
    pipeline: Settings,
    mitdb: Path,
    prefix: str,
    fault: object,
    duration: int = 180,
    state_kept: bool = True,
) -> dict:
    """`state_kept`: the consumers survive, so every label and alarm is exactly the offline
    one; otherwise the replacements rebuild their patients' state from the look-back and a
    few labels near the handover may differ (never a beat lost or doubled)."""
    expected = offline_reference(mitdb, 3, duration, prefix)
    feeding = asyncio.create_task(
        replay(pipeline, mitdb, RECORDS, 3, speed=30, duration_s=duration, prefix=prefix)
    )
    await asyncio.sleep(2.5)
    fault()  # type: ignore[operator]
    await feeding
    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=300)
    assert set(stored) == set(expected.beats)  # none lost; the primary key forbids doubles
    _, alarms = await stored_outputs(pipeline, prefix)
    if state_kept:
        assert stored == expected.beats  # classes identical too
        assert sorted(alarms) == sorted(expected.alarms)
    else:
        agreement = np.mean([stored[k] == expected.beats[k] for k in expected.beats])
        assert agreement > 0.99
        assert_no_repeated_alarm(alarms)
    await assert_kafka_outputs_once(pipeline, prefix, set(stored), alarms)
    return await wait_for_zero_lag()


def perturbed_model(seed: int) -> BeatClassifier:
    """The shipped model with its weights nudged: a distinct version with the same behaviour."""
    model = copy.deepcopy(load_artifact().model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-6 * torch.randn(p.shape, generator=generator))
    return model.eval()
