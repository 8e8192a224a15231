"""Who is logged in to the station: sessions made from an API key with a station scope (or a
one-time login link), kept in the station's memory, ended by logout, idleness or the key's
revocation (checked again every `RECHECK_S`)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import asyncpg

from ecgstream.io.api_keys import active_keys, parse_key, secret_matches

COOKIE = "station_session"
VIEW_SCOPES = ("station", "station-view")  # see the page
ACT_SCOPES = ("station",)  # acknowledge and silence too
RECHECK_S = 10.0


@dataclass
class Session:
    key_id: str
    name: str  # the key's name: who acted, in the audit trail
    scopes: tuple[str, ...]
    last_seen: float
    checked_at: float

    @property
    def may_act(self) -> bool:
        return any(s in ACT_SCOPES for s in self.scopes)


class Sessions:
    def __init__(self, pool: asyncpg.Pool, idle_s: float) -> None:
        self._pool = pool
        self._idle_s = idle_s
        self._by_token: dict[str, Session] = {}

    async def _key(self, key_id: str) -> tuple[str, tuple[str, ...], str] | None:
        """(secret hash, scopes, name) of an active key with a station scope."""
        keys = await active_keys(self._pool)
        key = keys.get(key_id)
        if key is None or not any(s in VIEW_SCOPES for s in key.scopes):
            return None
        name = await self._pool.fetchval("SELECT name FROM api_keys WHERE key_id = $1", key_id)
        return key.secret_sha256, key.scopes, str(name)

    async def login_with_key(self, presented: str) -> str | None:
        """A session token for a valid key with a station scope, else None."""
        parsed = parse_key(presented.strip())
        if parsed is None:
            return None
        key_id, secret = parsed
        found = await self._key(key_id)
        if found is None or not secret_matches(secret, found[0]):
            return None
        return self._open(key_id, found[2], found[1])

    async def login_with_key_id(self, key_id: str) -> str | None:
        """After a one-time link was redeemed for this key."""
        found = await self._key(key_id)
        return None if found is None else self._open(key_id, found[2], found[1])

    def _open(self, key_id: str, name: str, scopes: tuple[str, ...]) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        self._by_token[token] = Session(key_id, name, scopes, now, now)
        return token

    async def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        now = time.time()
        if session is None or now - session.last_seen > self._idle_s:
            self._by_token.pop(token, None)
            return None
        if now - session.checked_at > RECHECK_S:
            if await self._key(session.key_id) is None:  # revoked, or its scope taken away
                self._by_token.pop(token, None)
                return None
            session.checked_at = now
        session.last_seen = now
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)
