"""The edge runner's durable queue: every beat and alarm is committed to SQLite before anything
else happens to it, and leaves only when the target has acknowledged it.

Rows are keyed by their idempotency key (`beat_id`, `alarm_id`), so a record processed twice
(a restart over the same file) adds nothing. WAL with synchronous=FULL: a committed row survives
a power cut, which is the failure a bedside device actually has.

Sent rows are pruned (`prune`): those sent longer ago than a retention age, and the oldest sent
beyond a row cap. An unsent row is never pruned, however old or however many: results the
target has not acknowledged are the ones that must survive. A pruned row's key is forgotten,
so a file replayed after its rows were pruned would be sent again; a live runner resumes from
its saved position (`next_sample`) and never replays.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('beat', 'alarm')),
    message_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Pending:
    seq: int
    kind: str
    message_id: str
    payload: bytes


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(
        self, messages: Iterable[tuple[str, str, bytes]], state: dict[str, str] | None = None
    ) -> int:
        """(kind, message_id, payload) rows and state changes in one transaction; returns the
        rows that were new."""
        now = time.time()
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox (kind, message_id, payload, created) "
                "VALUES (?, ?, ?, ?)",
                [(kind, mid, payload, now) for kind, mid, payload in messages],
            )
            added = self._db.total_changes - before
            self._set_state(state or {})
        return added

    def pending(self, limit: int) -> list[Pending]:
        rows = self._db.execute(
            "SELECT seq, kind, message_id, payload FROM outbox WHERE sent_at IS NULL "
            "ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [Pending(*row) for row in rows]

    def mark_sent(self, message_ids: Sequence[str], state: dict[str, str] | None = None) -> None:
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE message_id = ? AND sent_at IS NULL",
                [(now, mid) for mid in message_ids],
            )
            self._set_state(state or {})

    def prune(self, keep_sent_s: float, max_sent_rows: int, now: float | None = None) -> int:
        """Delete sent rows older than `keep_sent_s` and the oldest sent ones beyond
        `max_sent_rows`; returns how many went. Freed pages are reused by new rows (the file
        stops growing rather than shrinking)."""
        now = time.time() if now is None else now
        with self._transaction():
            before = self._db.total_changes
            self._db.execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?",
                (now - keep_sent_s,),
            )
            self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                "WHERE sent_at IS NOT NULL ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                (max_sent_rows,),
            )
            return self._db.total_changes - before

    def counts(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT kind, sent_at IS NOT NULL, count(*) FROM outbox GROUP BY 1, 2"
        ).fetchall()
        out = {"beats": 0, "alarms": 0, "pending": 0, "sent": 0}
        for kind, sent, n in rows:
            out["beats" if kind == "beat" else "alarms"] += n
            out["sent" if sent else "pending"] += n
        return out

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, **values: str) -> None:
        with self._transaction():
            self._set_state(values)

    def _set_state(self, values: dict[str, str]) -> None:
        self._db.executemany(
            "INSERT INTO state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
