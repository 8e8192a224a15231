"""Faults during a replay: the coordinator and a Serve replica are killed; the Kafka broker and
PostgreSQL are SIGKILLed and come back 20 s later; a consumer dies exactly between the sinks'
acknowledgement and the offset commit. Every beat must still be stored exactly once, and read
exactly once from Kafka by a read_committed subscriber; no alarm may be repeated, and the
pipeline must get back to zero lag alone. (A consumer killed:
test_pipeline.py; a whole Ray node: test_chaos_multinode.py; both marked chaos too.)"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import ray

from actors.naming import namespace
from actors.pipeline import coordinator_handle
from cluster.stack import LocalStack
from ecgstream.io.device_simulator import replay
from ecgstream.settings import Settings
from tests.integration.pipeline_support import (
    RECORDS,
    assert_kafka_outputs_once,
    offline_reference,
    replay_with_fault,
    stored_outputs,
    wait_for_beats,
    wait_for_zero_lag,
)

pytestmark = pytest.mark.chaos


async def test_coordinator_killed(pipeline: Settings, mitdb_dir: Path) -> None:
    before = ray.get(coordinator_handle().status.remote(), timeout=60)

    def kill_coordinator() -> None:
        ray.kill(coordinator_handle(), no_restart=False)  # Ray restarts it

    prefix = f"coord{uuid.uuid4().hex[:6]}"
    after = await replay_with_fault(pipeline, mitdb_dir, prefix, kill_coordinator)
    # the restarted coordinator adopted the same consumers and kept their partitions
    assert after["assignment"] == before["assignment"]
    assert any("adopted" in e for e in after["events"])


async def test_serve_replica_killed(pipeline: Settings, mitdb_dir: Path) -> None:
    from ray import serve

    from ecgstream.lanes import APP_NAME
    from serve_app.inference import DEPLOYMENT_NAME

    def kill_replica() -> None:
        names = ray.util.list_named_actors(all_namespaces=True)
        replica = next(
            a for a in names if a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#{DEPLOYMENT_NAME}")
        )
        ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)

    prefix = f"replica{uuid.uuid4().hex[:6]}"
    await replay_with_fault(pipeline, mitdb_dir, prefix, kill_replica)
    status = serve.status().applications[APP_NAME]
    assert str(status.status).endswith("RUNNING")


async def test_consumer_dies_between_the_database_commit_and_the_offset_commit(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    """The worst moment to die: PostgreSQL holds the batch, its Kafka transaction (outputs and
    offsets) is not committed. The coordinator fences the dead consumer's transactional id, the
    consumer taking over reads the batch again; PostgreSQL keeps each beat once and a
    read_committed reader sees each once."""
    victim: dict[str, str] = {}

    def crash_after_the_writes() -> None:
        status = ray.get(coordinator_handle().status.remote(), timeout=60)
        victim["name"] = next(c["name"] for c in status["consumers"] if c.get("devices"))
        actor = ray.get_actor(victim["name"], namespace=namespace())
        ray.get(actor.arm_failpoint.remote("written", after_batches=1), timeout=30)

    prefix = f"failpt{uuid.uuid4().hex[:6]}"
    after = await replay_with_fault(
        pipeline, mitdb_dir, prefix, crash_after_the_writes, state_kept=False
    )
    events = after["events"]
    assert any(f"lost {victim['name']}" in e for e in events), events  # it did die there
    assert any(f"fenced {victim['name']}" in e for e in after["events"])  # its txn aborted
    assert victim["name"] not in after["assignment"]


async def _outage(
    pipeline: Settings, mitdb: Path, prefix: str, stop: object, start: object
) -> None:
    """Publish a long replay at full speed, kill a service while the consumers work through
    it, bring it back 20 s later; nothing may be lost or doubled, and the lag drains."""
    duration = 600
    expected = offline_reference(mitdb, 3, duration, prefix)
    await replay(pipeline, mitdb, RECORDS, 3, speed=0, duration_s=duration, prefix=prefix)
    await asyncio.sleep(0.5)
    # the stack's controls are synchronous (they run their own event loops): use a thread
    await asyncio.to_thread(stop)  # type: ignore[arg-type]
    await asyncio.sleep(20)
    await asyncio.to_thread(start)  # type: ignore[arg-type]
    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=300)
    assert set(stored) == set(expected.beats)
    assert stored == expected.beats
    _, alarms = await stored_outputs(pipeline, prefix)
    assert sorted(alarms) == sorted(expected.alarms)
    await assert_kafka_outputs_once(pipeline, prefix, set(stored), alarms)
    await wait_for_zero_lag()


async def test_postgres_killed_mid_stream(
    pipeline: Settings, mitdb_dir: Path, stack: LocalStack
) -> None:
    def restart() -> None:
        stack.postgres.start()
        stack.postgres.wait_ready()

    prefix = f"pgkill{uuid.uuid4().hex[:6]}"
    await _outage(pipeline, mitdb_dir, prefix, stack.postgres.kill, restart)


async def test_kafka_broker_killed_mid_stream(
    pipeline: Settings, mitdb_dir: Path, stack: LocalStack
) -> None:
    def restart() -> None:
        stack.kafka.start()
        stack.kafka.wait_ready()

    prefix = f"kafkakill{uuid.uuid4().hex[:6]}"
    await _outage(pipeline, mitdb_dir, prefix, stack.kafka.kill, restart)
