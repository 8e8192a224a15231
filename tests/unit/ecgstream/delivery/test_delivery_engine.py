"""The delivery engine with fakes of the log, the sinks and the model, on a real record (119):
crashed at every step boundary and restarted, the store ends as after an uninterrupted run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from ecgstream.delivery.engine import DeliveryEngine, DeliveryHaltedError, RetryPolicy
from ecgstream.delivery.ports import BatchOutput, Classified, Fetched, PermanentError
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.stream import PreprocessConfig
from tests.conftest import record_chunks

CLASSES = ("N", "S", "V", "F")
LOOKBACK = 120  # messages (1-s chunks) re-read to rebuild a device's state, as the runtime does
BATCH = 7  # chunks per fetch


@pytest.fixture(scope="module")
def chunks(mitdb_dir: Path) -> list[bytes]:
    """Five minutes of 119 (ventricular bigeminy and trigeminy) as 1-s chunks."""
    return record_chunks(mitdb_dir, "119", 300)


@dataclass
class FakeLog:
    """One partition of the samples topic and the consumer group's committed offset."""

    values: list[bytes]
    committed: int = 0


class FakeFetcher:
    """Reads from the committed offset less the look-back; what lies before the committed
    offset is marked replay (its outputs were written by the engine that crashed)."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.position = max(0, log.committed - LOOKBACK)
        self.replay_until = log.committed
        self.exhausted = asyncio.Event()

    async def fetch(self) -> Fetched | None:
        taken = self.log.values[self.position : self.position + BATCH]
        if not taken:
            self.exhausted.set()
            return None
        messages = [
            InputMessage(
                0, self.position + i, b"bed-1", v, 0, self.position + i < self.replay_until
            )
            for i, v in enumerate(taken)
        ]
        self.position += len(taken)
        return Fetched(messages, {0: self.position})


class FakeCommitter:
    def __init__(self, log: FakeLog) -> None:
        self.log = log

    async def commit(self, out: BatchOutput) -> None:
        self.log.committed = out.ends[0]


class PrematureIsV:
    """A deterministic stand-in for the model: V when the beat comes early (RR features)."""

    async def classify(self, windows: np.ndarray, rr: np.ndarray) -> Classified:
        proba = np.zeros((len(rr), 4), np.float32)
        premature = rr[:, 4] < 0.8  # previous RR over the local mean
        proba[premature, 2], proba[~premature, 0] = 1.0, 1.0
        return Classified(proba, CLASSES, "fake-1", len(rr))


@dataclass
class FakeStore:
    """PostgreSQL's contract: rows keyed by beat id and alarm id; a second write is a no-op."""

    name: str = "postgres"
    beats: dict[str, str] = field(default_factory=dict)
    alarms: dict[str, int | None] = field(default_factory=dict)  # id -> end sample
    letters: dict[tuple[int, int], str] = field(default_factory=dict)
    fail_next: list[BaseException] = field(default_factory=list)

    async def write(self, out: BatchOutput) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        for b in out.beats:
            self.beats.setdefault(b.beat_id, b.label)
        for e in out.alarms:
            if e.is_end:
                self.alarms[e.alarm.alarm_id] = e.ended_sample
            else:
                self.alarms.setdefault(e.alarm.alarm_id, None)
        for letter, _ in out.letters:
            self.letters[(letter.partition, letter.offset)] = letter.reason


@dataclass
class FakeTopic:
    """Kafka's at-least-once output: every write appends."""

    name: str = "kafka"
    beat_ids: list[str] = field(default_factory=list)

    async def write(self, out: BatchOutput) -> None:
        self.beat_ids += [b.beat_id for b in out.beats]


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the engine may swallow it)."""


def _engine(log: FakeLog, store: FakeStore, topic: FakeTopic, **kwargs) -> DeliveryEngine:
    async def no_sleep(seconds: float) -> None:
        return None

    return DeliveryEngine(
        FakeFetcher(log),
        StreamProcessor(PreprocessConfig()),
        PrematureIsV(),
        [store, topic],
        FakeCommitter(log),
        sleep=no_sleep,
        **kwargs,
    )


async def _drain(engine: DeliveryEngine, pipelined: bool = False) -> None:
    """Deliver the whole log: batch by batch, or as `run` does (fetching ahead), stopped once
    the fetcher has nothing more."""
    if pipelined:
        await engine.run(engine.fetcher.exhausted)
        return
    while await engine.run_once() is not None:
        pass


def _uninterrupted(chunks: list[bytes]) -> tuple[FakeStore, FakeTopic]:
    store, topic = FakeStore(), FakeTopic()
    asyncio.run(_drain(_engine(FakeLog(chunks), store, topic)))
    return store, topic


@pytest.fixture(scope="module")
def reference(chunks: list[bytes]) -> tuple[FakeStore, FakeTopic]:
    return _uninterrupted(chunks)


def test_an_uninterrupted_run_stores_every_beat_and_its_alarms(
    reference: tuple[FakeStore, FakeTopic],
) -> None:
    store, topic = reference
    assert len(store.beats) > 300
    assert "V" in store.beats.values() and "N" in store.beats.values()
    assert any(":pvc_burden:" in a for a in store.alarms)  # bigeminy: > 20 % V
    assert topic.beat_ids == list(store.beats)  # each beat once, in stream order


@pytest.mark.parametrize(
    "step",
    ["fetched", "processed", "classified", "written:postgres", "written:kafka", "written",
     "committed"],
)  # fmt: skip
@pytest.mark.parametrize("batch", [2, 19, 36])
@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "fetching-ahead"])
def test_a_crash_at_any_step_loses_and_doubles_nothing(
    chunks: list[bytes],
    reference: tuple[FakeStore, FakeTopic],
    step: str,
    batch: int,
    pipelined: bool,
) -> None:
    """Crash the engine at `step` of its `batch`-th batch, start a new one (fresh state, the
    look-back replayed) on the same log and store: the store equals the uninterrupted run's.
    Fetching ahead, the crash also loses the batches fetched and processed but not committed."""
    expected, _ = reference
    log, store, topic = FakeLog(chunks), FakeStore(), FakeTopic()
    seen = {"batches": 0}

    def crash_at(boundary: str) -> None:
        if boundary == "fetched":
            seen["batches"] += 1
        if boundary == step and seen["batches"] == batch:
            raise Crash(boundary)

    with pytest.raises(Crash):
        asyncio.run(_drain(_engine(log, store, topic, on_step=crash_at), pipelined))
    assert log.committed < len(chunks)
    asyncio.run(_drain(_engine(log, store, topic), pipelined))
    assert log.committed == len(chunks)
    assert store.beats == expected.beats  # 0 lost, 0 doubled, the same classes
    assert store.alarms == expected.alarms
    # Kafka without transactions is at-least-once: at most the crashed batch is sent twice
    assert set(topic.beat_ids) == set(expected.beats)
    doubled = len(topic.beat_ids) - len(set(topic.beat_ids))
    assert doubled <= 2 * BATCH * 2  # a batch holds about 1.3 beats per chunk


def test_transient_failures_are_retried_and_counted(chunks: list[bytes]) -> None:
    log, store, topic = FakeLog(chunks[:40]), FakeStore(), FakeTopic()
    store.fail_next = [ConnectionError("database restarting"), TimeoutError()]
    engine = _engine(log, store, topic, retry=RetryPolicy(initial_s=0.01, cap_s=0.02))
    asyncio.run(_drain(engine))
    assert engine.retries["written:postgres"] == 2
    assert log.committed == 40 and store.beats


def test_a_permanent_failure_halts_with_its_step_and_commits_nothing(
    chunks: list[bytes],
) -> None:
    log, store, topic = FakeLog(chunks[:40]), FakeStore(), FakeTopic()
    store.fail_next = [PermanentError('relation "beats" does not exist')]
    engine = _engine(log, store, topic)
    with pytest.raises(DeliveryHaltedError, match=r'written:postgres failed permanently.*"beats"'):
        asyncio.run(_drain(engine))
    assert log.committed == 0 and engine.counts["batches"] == 0


def test_a_stop_request_finishes_and_commits_the_batch_in_flight(chunks: list[bytes]) -> None:
    log, store, topic = FakeLog(chunks[:60]), FakeStore(), FakeTopic()
    stop = asyncio.Event()

    def stop_while_classifying(boundary: str) -> None:
        if boundary == "processed" and engine.counts["batches"] == 2:
            stop.set()  # SIGTERM arrives while the third batch is being processed

    engine = _engine(log, store, topic, on_step=stop_while_classifying)
    asyncio.run(engine.run(stop, depth=1))
    # fetching ahead, the batches fetched by then are finished and committed too: none is left
    # processed but uncommitted, and nothing after them was fetched
    assert engine.counts["batches"] >= 3
    assert log.committed == engine.counts["batches"] * BATCH == engine.fetcher.position


def test_fetching_ahead_stores_what_one_by_one_stores(
    chunks: list[bytes], reference: tuple[FakeStore, FakeTopic]
) -> None:
    expected, expected_topic = reference
    log, store, topic = FakeLog(chunks), FakeStore(), FakeTopic()
    asyncio.run(_drain(_engine(log, store, topic), pipelined=True))
    assert store == expected and topic.beat_ids == expected_topic.beat_ids


def test_a_halt_while_fetching_ahead_stops_the_fetching(chunks: list[bytes]) -> None:
    log, store, topic = FakeLog(chunks[:60]), FakeStore(), FakeTopic()
    store.fail_next = [PermanentError("permission denied for table beats")]
    engine = _engine(log, store, topic)
    with pytest.raises(DeliveryHaltedError, match="written:postgres"):
        asyncio.run(engine.run(asyncio.Event(), depth=2))
    assert log.committed == 0
    assert engine.fetcher.position <= 4 * BATCH  # the first batch, and at most depth + 1 more


def test_bad_messages_reach_the_sinks_as_dead_letters_once(chunks: list[bytes]) -> None:
    values = [*chunks[:10], b"\xc1garbage", *chunks[10:20]]
    log, store, topic = FakeLog(values), FakeStore(), FakeTopic()
    asyncio.run(_drain(_engine(log, store, topic)))
    assert store.letters == {(0, 10): "not_msgpack"}
    # a restart that replays the bad message does not dead-letter it again
    log.committed, store.letters = 14, {}
    asyncio.run(_drain(_engine(log, store, topic)))
    assert store.letters == {}


def test_a_lane_that_raises_no_alarms_writes_beats_only(chunks: list[bytes]) -> None:
    log, store, topic = FakeLog(chunks[:120]), FakeStore(), FakeTopic()
    asyncio.run(_drain(_engine(log, store, topic, emits_alarms=False)))
    assert store.beats and store.alarms == {}
