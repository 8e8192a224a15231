"""Versioned SQL migrations: `migrations/NNNN_name.sql`, applied once each, in order.

A migration that was applied is immutable: if its file changes afterwards the checksum no longer
matches and `apply_migrations` refuses to go on, instead of silently diverging schemas.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from ecgstream.errors import StackError

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x6563_6773  # "ecgs": serialises concurrent migrators


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("cluster").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StackError("postgres", f"migration versions must be 1..N without gaps: {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations, each in its own transaction. Returns those applied now."""
    applied_now = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in load_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise StackError(
                        "postgres",
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; add a new migration instead of editing an old one",
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration)
    return applied_now


SINK_ROLE = "ecgstream_sink"
SINK_TABLES = ("beats", "beats_shadow", "beats_staging", "alarms")


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply pending migrations, then (re)grant the sink role its privileges on them."""
    applied = await apply_migrations(conn)
    await grant_sink_role(conn)
    return applied


async def grant_sink_role(conn: asyncpg.Connection, role: str = SINK_ROLE) -> bool:
    """INSERT and SELECT on the stream sink's tables, and UPDATE of an alarm's episode end
    only (AF/VF ends are recorded on the row that opened them), nothing else: a stolen sink
    credential can add rows and close episodes but not change, delete or restructure them.
    False if the role does not exist (a deployment that runs everything as the owner)."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        return False
    quoted = await conn.fetchval("SELECT quote_ident($1)", role)
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    await conn.execute(f"GRANT SELECT, INSERT ON {', '.join(SINK_TABLES)} TO {quoted}")
    await conn.execute(f"GRANT UPDATE (end_sample, end_time) ON alarms TO {quoted}")
    return True
