"""Retrying a delivery step: transient failures with capped exponential backoff, counted per
step; a `PermanentError` or a programming error ends the retrying with the step and the cause."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ecgstream.delivery.ports import PermanentError

log = logging.getLogger("ecgstream.delivery")
T = TypeVar("T")
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, AssertionError)


class DeliveryHaltedError(Exception):
    """The engine stopped on a failure retrying cannot fix; the batch was not committed."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"{step} failed permanently: {type(cause).__name__}: {cause}")
        self.step, self.cause = step, cause


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.2
    cap_s: float = 5.0


async def retrying(
    step: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retries: Counter[str],
    sleep: Callable[[float], Awaitable[None]],
) -> T:
    delay = policy.initial_s
    while True:
        try:
            return await call()
        except (PermanentError, *PROGRAMMING_ERRORS) as exc:
            raise DeliveryHaltedError(step, exc) from exc
        except Exception as exc:
            retries[step] += 1
            log.warning("%s failed (%s); retry in %.1f s", step, type(exc).__name__, delay)
            await sleep(delay)
            delay = min(delay * 2, policy.cap_s)
