"""API keys: `ecgk_<key_id>_<secret>`, stored as key id + sha256 of the secret.

The secret has 256 bits of entropy, so a plain sha256 is enough (a slow password hash protects
low-entropy secrets); comparison is constant-time. The full key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

PREFIX = "ecgk"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    requests_per_minute: int | None = None  # None: the deployment's default budget


@dataclass(frozen=True)
class ActiveKey:
    """What the API caches of a key that is not revoked."""

    secret_sha256: str
    scopes: tuple[str, ...]
    requests_per_minute: int | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None (the caller answers 401 either way)."""
    parts = presented.split("_")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(_digest(secret), stored_sha256)


async def create_key(
    conn: asyncpg.Connection,
    name: str,
    scopes: tuple[str, ...] = ("classify",),
    requests_per_minute: int | None = None,
) -> tuple[str, str]:
    """Returns (key id, the full key). The full key is not stored anywhere."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    await conn.execute(
        """INSERT INTO api_keys (key_id, name, secret_sha256, scopes, requests_per_minute)
           VALUES ($1, $2, $3, $4, $5)""",
        key_id,
        name,
        _digest(secret),
        list(scopes),
        requests_per_minute,
    )
    return key_id, f"{PREFIX}_{key_id}_{secret}"


async def list_keys(conn: asyncpg.Connection) -> list[ApiKey]:
    rows = await conn.fetch("SELECT * FROM api_keys ORDER BY created_at")
    return [
        ApiKey(
            r["key_id"],
            r["name"],
            tuple(r["scopes"]),
            r["created_at"],
            r["revoked_at"],
            r["requests_per_minute"],
        )
        for r in rows
    ]


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", key_id
    )
    return status.endswith(" 1")


async def active_keys(conn: asyncpg.Connection) -> dict[str, ActiveKey]:
    """key id -> what the API needs of each key not revoked."""
    rows = await conn.fetch(
        """SELECT key_id, secret_sha256, scopes, requests_per_minute
           FROM api_keys WHERE revoked_at IS NULL"""
    )
    return {
        r["key_id"]: ActiveKey(r["secret_sha256"], tuple(r["scopes"]), r["requests_per_minute"])
        for r in rows
    }
