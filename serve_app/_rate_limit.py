"""Per-key request budgets of the REST API: token buckets, one per API key and replica.

A key's budget is `requests_per_minute` with bursts of up to `burst` requests. Each replica
enforces its share (the budget divided by the replica count): Serve's ingress spreads a key's
requests over the replicas, so the whole deployment stays within about one burst of the budget
without a shared counter on the request path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, share: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < share <= 1:
            raise ValueError("a replica's share of a budget is in (0, 1]")
        self._share = share
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key_id: str, requests_per_minute: int, burst: int) -> float:
        """0 if the request may go ahead (and it is counted), else seconds until it may.
        A burst never exceeds the key's budget for one minute."""
        rate = requests_per_minute * self._share / 60.0
        capacity = max(1.0, min(burst, requests_per_minute) * self._share)
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds, never 0 (a client would retry at once)."""
    return str(max(1, math.ceil(wait_s)))
