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
from ecgstream.identity import SIGNATURE_HEADER, device_key, sign
from ecgstream.io.device_simulator import REPLAY_SESSION, malformed_messages, replay
from ecgstream.io.kafka import make_producer
from ecgstream.records import load_record
from ecgstream.settings import Settings
from ecgstream.wire import encode_chunk, make_chunk
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
    assert in_kafka == {
        f"{d}:{REPLAY_SESSION}:{s}": [label] for (d, s), label in expected.beats.items()
    }
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


async def test_a_device_cannot_publish_as_another_and_a_reboot_is_a_new_session(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    """Through the real stack: chunks naming a device but signed with another device's key,
    or unsigned, are dead-lettered with their reason and store nothing; the same devices
    replayed in a second boot session (counters from 0 again) are stored again under that
    session, beat for beat, instead of being dropped as duplicates."""
    prefix = f"ident{uuid.uuid4().hex[:6]}"
    victim, intruder = f"{prefix}-victim", f"{prefix}-intruder"
    secret = pipeline.fleet_secret()
    assert secret is not None
    record = load_record(mitdb_dir, "101")
    payloads = [
        encode_chunk(
            make_chunk(
                device_id=victim,
                patient_id="pt-victim",
                seq=i,
                first_sample=i * 360,
                start_time=time.time() + i,
                fs=record.fs,
                lead_names=record.lead_names,
                adc_gain=record.adc_gain,
                adc_baseline=record.adc_baseline,
                samples=record.digital[:, i * 360 : (i + 1) * 360],
                session="boot-1",
            )
        )
        for i in range(20)
    ]
    before = ray.get(coordinator_handle().status.remote(), timeout=60)
    producer = make_producer(pipeline, "device")
    await producer.start()
    try:
        for payload in payloads[:15]:  # the intruder signs with its own key
            signature = sign(device_key(secret, intruder), payload)
            await producer.send(
                pipeline.topics.samples,
                payload,
                key=victim.encode(),
                headers=[(SIGNATURE_HEADER, signature)],
            )
        for payload in payloads[15:]:  # no signature at all
            await producer.send(pipeline.topics.samples, payload, key=victim.encode())
        await producer.flush()
    finally:
        await producer.stop()

    reboot = f"{prefix}-dev"
    first = await replay(pipeline, mitdb_dir, ["119"], 1, speed=0, duration_s=30, prefix=reboot)
    await wait_for_zero_lag()
    second = await replay(
        pipeline, mitdb_dir, ["119"], 1, speed=0, duration_s=30, prefix=reboot, session="boot-2"
    )
    assert first.chunks == second.chunks == 30
    await wait_for_zero_lag()
    conn = await asyncpg.connect(pipeline.postgres_dsn())
    try:
        rows = await conn.fetch(
            "SELECT device_id, session_id, sample_index FROM beats WHERE device_id LIKE $1",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    assert not [r for r in rows if r["device_id"] == victim], "an impersonated chunk was stored"
    by_session: dict[str, list[int]] = {}
    for r in rows:
        by_session.setdefault(r["session_id"], []).append(r["sample_index"])
    assert sorted(by_session) == ["boot-1", "boot-2"]
    assert sorted(by_session["boot-1"]) == sorted(by_session["boot-2"])  # the same 30 s again
    assert len(by_session["boot-1"]) >= 25

    letters = await topic_messages(pipeline, pipeline.topics.deadletter)
    reasons = [dict(m.headers)["reason"].decode() for m in letters]  # only this test signs badly
    assert reasons.count("bad_signature") == 15 and reasons.count("unsigned") == 5
    after = ray.get(coordinator_handle().status.remote(), timeout=60)

    def total(status: dict, key: str) -> int:
        return sum(c.get(key, 0) for c in status["consumers"])

    assert total(after, "dead_letters") - total(before, "dead_letters") >= 20
    assert total(after, "sessions") - total(before, "sessions") >= 1  # the reboot, counted


async def test_edge_results_reach_postgresql_once_across_an_ingest_crash(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    """An edge runner's results, forwarded to Kafka, are stored in PostgreSQL by the edge
    ingest, each beat and alarm once, even when the ingest is killed mid-way (Ray restarts it
    and it resumes from its committed offsets); the stream's own beats are left alone."""
    import json
    import sys

    from actors._edge_ingest import edge_ingest_handle
    from ecgstream.edge.export import export_bundle
    from ecgstream.edge.outbox import Outbox

    bundle = tmp_path / "bundle"
    export_bundle(None, bundle)
    edge = str(Path(sys.executable).with_name("ecgstream-edge"))
    outboxes = []
    for n in range(2):  # two edge devices; the ingest is killed between them
        device = f"edgepg{uuid.uuid4().hex[:6]}"
        outbox = tmp_path / f"outbox-{n}.sqlite"
        process = await asyncio.create_subprocess_exec(
            edge, "run", "--bundle", str(bundle), "--device", device, "--outbox", str(outbox),
            "--wfdb", str(mitdb_dir / "208"), "--speed", "0", "--seconds", "300",
            "--kafka", pipeline.kafka_bootstrap,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.decode().splitlines()[-1])["forwarded"] > 300
        outboxes.append((device, outbox))
        if n == 0:
            ray.kill(edge_ingest_handle(), no_restart=False)  # a crash: Ray restarts it

    def outbox_ids(path: Path) -> tuple[set[str], set[str]]:
        box = Outbox(path)
        rows = box._db.execute("SELECT kind, message_id FROM outbox").fetchall()
        box.close()
        return {m for k, m in rows if k == "beat"}, {m for k, m in rows if k == "alarm"}

    conn = await asyncpg.connect(pipeline.postgres_dsn())
    try:
        for device, outbox in outboxes:
            beats, alarms = outbox_ids(outbox)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                stored = await conn.fetch(
                    "SELECT sample_index FROM beats WHERE device_id = $1", device
                )
                if len(stored) >= len(beats):
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(2)  # anything late would be a double
            stored = await conn.fetch("SELECT sample_index FROM beats WHERE device_id = $1", device)
            assert {f"{device}:{r['sample_index']}" for r in stored} == beats
            assert len(stored) == len(beats)  # the key allows no doubles; none are missing
            stored_alarms = await conn.fetch(
                "SELECT alarm_id FROM alarms WHERE device_id = $1", device
            )
            assert {r["alarm_id"] for r in stored_alarms} == alarms and alarms
    finally:
        await conn.close()
    stats = ray.get(edge_ingest_handle().stats.remote(), timeout=30)
    assert stats["beats"] > 0 and stats["malformed"] == 0
