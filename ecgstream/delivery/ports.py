"""What the delivery engine needs from the world, as small protocols, and what it hands on.

Each port is one job: the runtime implements them over aiokafka, asyncpg and Ray Serve; unit
tests implement them over lists and dicts. Errors a port raises are classified at the engine's
boundary: a `PermanentError` (or a programming error) stops the engine naming the step and the
cause; anything else is transient and retried with capped backoff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ecgstream.messages import AlarmEvent, BeatResult
from ecgstream.processing import (
    DeadLetter,
    Ingested,
    InputMessage,
    PendingAlarm,
    PendingBeat,
    PendingTick,
)


class PermanentError(Exception):
    """A failure that retrying cannot fix (bad credentials, a missing table, a wrong schema)."""


@dataclass(frozen=True)
class Fetched:
    """One fetched batch: the messages in partition order, and per partition the offset to
    commit once the batch's outputs are acknowledged (the last offset + 1)."""

    messages: list[InputMessage]
    ends: dict[int, int]


@dataclass(frozen=True)
class Classified:
    probabilities: np.ndarray  # float32 (n, n_classes)
    classes: tuple[str, ...]
    model_version: str
    batch_beats: int = 0  # the size of the model batch that served it (for the metrics)


@dataclass
class BatchOutput:
    """What one batch produces, for the sinks and the monitor."""

    beats: list[BeatResult]
    alarms: list[AlarmEvent]
    letters: list[tuple[DeadLetter, bytes]]  # dead letters with the payload that failed
    classes: tuple[str, ...]
    ingested: Ingested
    probabilities: np.ndarray
    inhibited: int = 0
    served: int = 0
    ends: dict[int, int] = field(default_factory=dict)


class Fetcher(Protocol):
    async def fetch(self) -> Fetched | None:
        """The next batch, or None when nothing arrived within the fetcher's wait."""
        ...


class Classifier(Protocol):
    async def classify(self, windows: np.ndarray, rr: np.ndarray) -> Classified: ...


class Sink(Protocol):
    name: str

    async def write(self, out: BatchOutput) -> None:
        """Store the batch's outputs; writing the same batch twice must store them once."""
        ...


class Committer(Protocol):
    async def commit(self, out: BatchOutput) -> None:
        """Mark the batch's input consumed (`out.ends`); a transactional committer also
        publishes the batch's outputs in the same transaction."""
        ...


class Monitor(Protocol):
    async def observe(self, out: BatchOutput) -> None:
        """Statistics of a delivered batch; best effort, never on the delivery's path."""
        ...


class Processor(Protocol):
    """`ecgstream.processing.StreamProcessor`: the per-device state of the owned partitions."""

    inhibited: int

    def ingest(self, messages: Sequence[InputMessage]) -> Ingested: ...

    def complete(
        self,
        beats: Sequence[PendingBeat],
        probabilities: np.ndarray,
        classes: Sequence[str],
        model_version: str,
        now_ms: float,
        ticks: Sequence[PendingTick] = (),
        technical: Sequence[PendingAlarm] = (),
    ) -> tuple[list[BeatResult], list[AlarmEvent]]: ...
