"""The central station's PostgreSQL: the audit trail of alarm actions, alarm history and the
one-time login tokens. Times are unix seconds on the Python side, timestamptz in the tables."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from ecgstream.io.api_keys import create_key, list_keys
from ecgstream.ward.alarm_board import AlarmAction


def _ts(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


async def record_action(
    conn: asyncpg.Connection | asyncpg.Pool,
    action: AlarmAction,
    device_id: str,
    key_id: str | None,
    detail: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO alarm_actions
               (alarm_id, device_id, action, actor, key_id, acted_at, silence_s, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        action.alarm_id,
        device_id,
        action.action,
        action.actor,
        key_id,
        _ts(action.at),
        action.silence_s,
        detail,
    )


async def actions_since(conn: asyncpg.Connection | asyncpg.Pool, since: float) -> list[AlarmAction]:
    """The board's actions (not the HL7 refusals) since a time: a restart replays them."""
    rows = await conn.fetch(
        """SELECT alarm_id, action, actor, acted_at, silence_s FROM alarm_actions
           WHERE acted_at >= $1 AND action IN ('acknowledge', 'silence', 'escalate')
           ORDER BY acted_at, action_id""",
        _ts(since),
    )
    return [
        AlarmAction(
            r["alarm_id"], r["action"], r["actor"], r["acted_at"].timestamp(), r["silence_s"]
        )
        for r in rows
    ]


async def bed_history(
    conn: asyncpg.Connection | asyncpg.Pool, device_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    """A bed's stored alarms, the newest first, each with its actions (the detail view)."""
    alarms = await conn.fetch(
        """SELECT alarm_id, kind, category, severity, start_time, end_time, inserted_at,
                  evidence->>'fault' AS fault
           FROM alarms WHERE device_id = $1 ORDER BY start_time DESC LIMIT $2""",
        device_id,
        limit,
    )
    ids = [r["alarm_id"] for r in alarms]
    actions = await conn.fetch(
        """SELECT alarm_id, action, actor, acted_at, silence_s FROM alarm_actions
           WHERE alarm_id = ANY($1::text[]) ORDER BY acted_at""",
        ids,
    )
    by_alarm: dict[str, list[dict[str, Any]]] = {}
    for r in actions:
        by_alarm.setdefault(r["alarm_id"], []).append(
            {
                "action": r["action"],
                "actor": r["actor"],
                "at": r["acted_at"].timestamp(),
                "silence_s": r["silence_s"],
            }
        )
    return [
        {
            "alarm_id": r["alarm_id"],
            "kind": r["kind"],
            "category": r["category"],
            "fault": r["fault"],
            "priority": r["severity"],
            "start_time": r["start_time"].timestamp(),
            "end_time": r["end_time"].timestamp() if r["end_time"] else None,
            "stored_at": r["inserted_at"].timestamp(),
            "actions": by_alarm.get(r["alarm_id"], []),
        }
        for r in alarms
    ]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_login_token(conn: asyncpg.Connection, key_id: str, valid_s: float) -> str:
    """A one-time login token for a key (256 bits; only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO station_login_tokens (token_sha256, key_id, expires_at) VALUES ($1, $2, $3)",
        _digest(token),
        key_id,
        datetime.now(UTC) + timedelta(seconds=valid_s),
    )
    return token


async def redeem_login_token(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> str | None:
    """The key id of a valid, unused, unexpired token, marking it used (atomically: a token
    opens one session only), else None."""
    return await conn.fetchval(
        """UPDATE station_login_tokens SET used_at = now()
           WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > now()
           RETURNING key_id""",
        _digest(token),
    )


async def login_link_token(conn: asyncpg.Connection, name: str, scope: str, valid_s: float) -> str:
    """A one-time login token for a person: their active key with exactly this station scope,
    made for them if they have none."""
    keys = [
        k
        for k in await list_keys(conn)
        if k.name == name and k.revoked_at is None and k.scopes == (scope,)
    ]
    key_id = keys[0].key_id if keys else (await create_key(conn, name, (scope,)))[0]
    return await create_login_token(conn, key_id, valid_s)
