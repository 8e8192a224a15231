"""The real PostgreSQL: the migrated schema, idempotent writes, immutable migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from cluster.migrate import apply_migrations, load_migrations
from ecgstream.alarms import Alarm
from ecgstream.errors import StackError
from ecgstream.io.sinks import PostgresSink
from ecgstream.messages import AlarmEvent, BeatResult
from ecgstream.settings import Settings


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(settings.postgres_dsn())
    try:
        yield connection
    finally:
        await connection.close()


async def test_all_migrations_applied(conn: asyncpg.Connection) -> None:
    versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in load_migrations()]
    assert await apply_migrations(conn) == []


async def test_beat_round_trip_and_idempotent_key(conn: asyncpg.Connection) -> None:
    row = (
        "dev-rt",
        123_456,
        "p-1",
        datetime(2026, 1, 1, tzinfo=UTC),
        "V",
        [0.01, 0.02, 0.95, 0.01, 0.01],
        0.61,
        "m-1",
        12.5,
    )
    insert = """
        INSERT INTO beats (device_id, sample_index, patient_ref, beat_time, label,
                           probabilities, rr_prev_s, model_version, latency_ms)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (device_id, session_id, sample_index) DO NOTHING"""
    await conn.execute("DELETE FROM beats WHERE device_id = 'dev-rt'")
    await conn.executemany(insert, [row, row, row])
    rows = await conn.fetch("SELECT * FROM beats WHERE device_id = 'dev-rt'")
    assert len(rows) == 1
    assert rows[0]["label"] == "V"
    assert rows[0]["probabilities"] == pytest.approx(row[5])


async def test_the_sink_writes_marked_beats_and_an_episode_end_once(settings: Settings) -> None:
    """A beat's signal fault is stored; an AF alarm raised, then its end, each written twice
    (a redelivery): one row, the end set once and never reset. Written as the stream writes,
    with the least-privilege sink role (which may close an episode, nothing more)."""
    alarm = Alarm("dev-end:afib:100", "dev-end", "afib", "medium", 100, 1.7e9, {"x": 1})
    raised = AlarmEvent(alarm, "p-1", "m-1")
    ended = AlarmEvent(alarm, "p-1", "m-1", ended_sample=9000, ended_time=1.7e9 + 25)
    beat = BeatResult(
        device_id="dev-end", patient_id="p-1", sample=500, time_s=1.7e9, label="N",
        probabilities=(0.9, 0.05, 0.03, 0.02), model_version="m-1", latency_ms=1.0,
        rr_prev_s=None, signal_fault="noise",
    )  # fmt: skip
    owner = await asyncpg.connect(settings.postgres_dsn())
    await owner.execute("DELETE FROM alarms WHERE device_id = 'dev-end'")
    await owner.execute("DELETE FROM beats WHERE device_id = 'dev-end'")
    pool = await asyncpg.create_pool(settings.postgres_dsn("sink"), min_size=1, max_size=1)
    try:
        sink = PostgresSink(pool)
        await sink.insert([beat], [raised])
        await sink.insert([beat], [raised, ended])  # redelivered, with the end in one batch
        await sink.insert([], [ended])
        later = AlarmEvent(alarm, "p-1", "m-1", ended_sample=9999, ended_time=1.7e9 + 30)
        await sink.insert([], [later])  # a second end for the same episode is not taken
        async with pool.acquire() as conn:  # the sink may not change anything else
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE alarms SET kind = 'vfib' WHERE device_id = 'dev-end'")
        rows = await owner.fetch("SELECT * FROM alarms WHERE device_id = 'dev-end'")
        beats = await owner.fetch("SELECT signal_fault FROM beats WHERE device_id = 'dev-end'")
    finally:
        await pool.close()
        await owner.close()
    assert len(rows) == 1 and rows[0]["end_sample"] == 9000
    assert rows[0]["end_time"] == datetime.fromtimestamp(1.7e9 + 25, UTC)
    assert [b["signal_fault"] for b in beats] == ["noise"]


async def test_label_outside_aami_classes_is_refused(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO beats (device_id, sample_index, patient_ref, beat_time, label,"
            " probabilities, model_version) VALUES ('d', 1, 'p', now(), 'X', '{}', 'm')"
        )


async def test_an_edited_migration_is_refused(conn: asyncpg.Connection) -> None:
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(StackError, match="changed after it was applied"):
            await apply_migrations(conn)
    finally:
        await tx.rollback()


def test_db_migrate_applies_nothing_twice_on_a_database_it_did_not_start(
    settings: Settings,
) -> None:
    """The Kubernetes migration Job's command, against the stack's PostgreSQL through a DSN
    (as a Job sees an operator-managed database): the schema is there, nothing is re-applied."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.integration.conftest import settings_env

    env = {**settings_env(settings), "ECGSTREAM_POSTGRES__DSN": settings.postgres_dsn()}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ecgstream")), "db", "migrate"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "schema up to date" in done.stdout
