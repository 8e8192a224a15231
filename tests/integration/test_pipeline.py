"""The streaming pipeline end to end on the real stack: Kafka -> Ray actors -> Ray Serve ->
Kafka + PostgreSQL, compared with the same code run offline in this process."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import ray

from actors.pipeline import coordinator_handle, monitor_handle
from cluster.migrate import SINK_ROLE, grant_sink_role
from ecgstream.io.kafka import make_producer
from ecgstream.settings import Settings
from ecgstream.tools.replay import malformed_messages, replay
from tests.integration.conftest import run_cli
from tests.integration.pipeline_support import (
    RECORDS,
    assert_kafka_outputs_once,
    assert_no_repeated_alarm,
    kafka_beats,
    offline_reference,
    stored_outputs,
    topic_messages,
    wait_for_beats,
    wait_for_zero_lag,
)


async def test_replay_gives_the_offline_beats_in_kafka_and_postgres(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:6]}"
    expected = offline_reference(mitdb_dir, 3, 120, prefix)
    assert len(expected.beats) > 300
    await replay(pipeline, mitdb_dir, RECORDS, 3, speed=0, duration_s=120, prefix=prefix)

    stored = await wait_for_beats(pipeline, prefix, len(expected.beats))
    assert stored == expected.beats  # same beats, same classes, each once
    _, alarms = await stored_outputs(pipeline, prefix)
    assert sorted(alarms) == sorted(expected.alarms)

    in_kafka = kafka_beats(await topic_messages(pipeline, pipeline.topics.beats), prefix)
    assert in_kafka == {f"{d}:{s}": [label] for (d, s), label in expected.beats.items()}
    await assert_kafka_outputs_once(pipeline, prefix, set(stored), alarms)
    # the monitor received the window statistics of every chunk (3 devices x 120 s)
    received = ray.get(monitor_handle().received_for.remote(f"{prefix}-"), timeout=60)
    assert received == 3 * 120


@pytest.mark.chaos
async def test_killing_a_consumer_loses_and_doubles_nothing(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    prefix = f"kill{uuid.uuid4().hex[:6]}"
    duration = 240
    expected = offline_reference(mitdb_dir, 4, duration, prefix)
    feeding = asyncio.create_task(
        replay(pipeline, mitdb_dir, RECORDS, 4, speed=40, duration_s=duration, prefix=prefix)
    )
    await asyncio.sleep(3)  # mid-replay
    status = ray.get(coordinator_handle().status.remote(), timeout=60)
    victim = next(c["name"] for c in status["consumers"] if c.get("devices"))
    ray.kill(ray.get_actor(victim, namespace=pipeline.ray.namespace), no_restart=True)
    await feeding

    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=240)
    # every beat exactly once (the primary key forbids doubles; none may be missing)
    assert set(stored) == set(expected.beats)
    agreement = np.mean([stored[k] == expected.beats[k] for k in expected.beats])
    assert agreement > 0.99  # state rebuilt from a 120 s look-back, not from the start

    _, alarms = await stored_outputs(pipeline, prefix)
    assert_no_repeated_alarm(alarms)
    await assert_kafka_outputs_once(pipeline, prefix, set(stored), alarms)  # read_committed
    status = await wait_for_zero_lag()
    assert victim not in status["assignment"]
    assert sorted(p for ps in status["assignment"].values() for p in ps) == status["partitions"]


async def test_malformed_messages_go_to_the_dead_letter_topic(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    bad = malformed_messages()
    producer = make_producer(pipeline, "device", max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for _name, payload in bad:
            await producer.send_and_wait(pipeline.topics.samples, payload, key=b"dev-bad")
    finally:
        await producer.stop()
    # the pipeline goes on: a good device after the bad messages is processed
    prefix = f"after{uuid.uuid4().hex[:6]}"
    await replay(pipeline, mitdb_dir, ["101"], 1, speed=0, duration_s=30, prefix=prefix)
    assert len(await wait_for_beats(pipeline, prefix, 25, timeout_s=120)) >= 25

    letters = await topic_messages(pipeline, pipeline.topics.deadletter)
    reasons = [dict(m.headers)["reason"].decode() for m in letters]
    for name, _payload in bad:
        assert name in reasons, f"no dead letter with reason {name}"
    status = ray.get(coordinator_handle().status.remote(), timeout=60)
    assert sum(c.get("dead_letters", 0) for c in status["consumers"]) >= len(bad)


async def test_pause_stops_fetching_and_resume_drains_the_backlog(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    coordinator = coordinator_handle()
    before = ray.get(coordinator.status.remote(), timeout=60)
    prefix = f"pause{uuid.uuid4().hex[:6]}"
    expected = offline_reference(mitdb_dir, 2, 60, prefix)
    ray.get(coordinator.pause.remote(), timeout=120)
    try:
        published = await replay(
            pipeline, mitdb_dir, RECORDS, 2, speed=0, duration_s=60, prefix=prefix
        )
        await asyncio.sleep(3)
        paused = ray.get(coordinator.status.remote(), timeout=60)
        assert all(c["paused"] for c in paused["consumers"])
        assert (await stored_outputs(pipeline, prefix))[0] == {}  # nothing fetched
        assert sum(sum(c["lag"].values()) for c in paused["consumers"]) == published.chunks
    finally:
        ray.get(coordinator.resume.remote(), timeout=120)
    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=120)
    assert stored == expected.beats
    after = await wait_for_zero_lag()
    assert after["assignment"] == before["assignment"]  # a pause moves no partition


async def test_a_write_retrying_cannot_fix_halts_delivery_until_resumed(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    """PostgreSQL refusing the sink's INSERT (a privilege revoked) is permanent: the consumers
    that meet it halt with the step and the cause in their status, commit nothing and skip
    nothing; `resume` after the fix delivers every beat once."""
    coordinator = coordinator_handle()
    prefix = f"halt{uuid.uuid4().hex[:6]}"
    expected = offline_reference(mitdb_dir, 2, 60, prefix)
    conn = await asyncpg.connect(pipeline.postgres_dsn())
    await conn.execute(f"REVOKE INSERT ON beats FROM {SINK_ROLE}")
    try:
        await replay(pipeline, mitdb_dir, RECORDS, 2, speed=0, duration_s=60, prefix=prefix)
        deadline = time.monotonic() + 60
        halted: list[dict] = []
        while not halted and time.monotonic() < deadline:
            await asyncio.sleep(1)
            status = ray.get(coordinator.status.remote(), timeout=60)
            halted = [c for c in status["consumers"] if c.get("halted")]
        assert halted, status
        assert "written:postgres failed permanently" in halted[0]["halted"]
        assert "InsufficientPrivilegeError" in halted[0]["halted"]
        await asyncio.sleep(3)
        status = ray.get(coordinator.status.remote(), timeout=60)
        assert sum(sum(c["lag"].values()) for c in status["consumers"]) > 0  # not skipped
        assert (await stored_outputs(pipeline, prefix))[0] == {}
        shown = await asyncio.to_thread(run_cli, pipeline, "stream", "status")
        assert "halted" in shown.stdout and "InsufficientPrivilegeError" in shown.stdout
    except BaseException:
        await grant_sink_role(conn)
        ray.get(coordinator.resume.remote(), timeout=120)  # leave the pipeline running
        raise
    finally:
        await grant_sink_role(conn)
        await conn.close()
    resumed = await asyncio.to_thread(run_cli, pipeline, "stream", "resume")  # as a user does
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=120)
    assert stored == expected.beats
    after = await wait_for_zero_lag()
    assert not any(c.get("halted") for c in after["consumers"])
