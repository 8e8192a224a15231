"""One PostgreSQL connection for one piece of work, from synchronous code (CLI, benchmarks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from ecgstream.settings import Settings

T = TypeVar("T")


def with_connection(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await asyncpg.connect(settings.postgres_dsn())
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())
