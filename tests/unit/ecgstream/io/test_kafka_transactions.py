"""The transactional committer's handling of a transaction that fails (pure logic, a fake
producer; the real broker's behaviour is tested in tests/integration: test_chaos, test_pipeline)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerFenced, TopicAuthorizationFailedError

from ecgstream.delivery.ports import BatchOutput, PermanentError
from ecgstream.io.kafka_transactions import TransactionalKafkaCommitter
from ecgstream.processing import Ingested


class FakeProducer:
    """Records the calls; `fail_at` raises once at that call."""

    def __init__(self, calls: list[str], fail_at: str | None, error: Exception) -> None:
        self.calls, self.fail_at, self.error = calls, fail_at, error

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name.split()[0] == self.fail_at:
            raise self.error

    async def start(self) -> None:
        self._call("start")

    async def stop(self) -> None:
        self._call("stop")

    async def begin_transaction(self) -> None:
        self._call("begin")

    async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        self._call(f"offsets {group_id} {sorted((tp.partition, o) for tp, o in offsets.items())}")

    async def commit_transaction(self) -> None:
        self._call("commit")


class FakeSink:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer

    async def send(self, beats: list, alarms: list, letters: list, classes: tuple) -> None:
        self.producer._call("send")


def _batch() -> BatchOutput:
    ingested = Ingested()
    empty = np.zeros((0, 4), np.float32)
    return BatchOutput([], [], [], ("N", "S", "V", "F"), ingested, empty, ends={0: 10, 3: 7})


def _committer(
    calls: list[str], fail_at: str | None = None, error: Exception | None = None
) -> TransactionalKafkaCommitter:
    producers = iter(
        [FakeProducer(calls, fail_at, error or KafkaTimeoutError())]
        + [FakeProducer(calls, None, KafkaTimeoutError()) for _ in range(3)]
    )
    return TransactionalKafkaCommitter(
        lambda: next(producers), FakeSink, "ecg.samples", "ecgstream-pipeline"
    )


def test_outputs_and_offsets_go_in_one_transaction() -> None:
    calls: list[str] = []
    committer = _committer(calls)
    asyncio.run(committer.commit(_batch()))
    asyncio.run(committer.commit(_batch()))
    txn = ["begin", "send", "offsets ecgstream-pipeline [(0, 10), (3, 7)]", "commit"]
    assert calls == ["start", *txn, *txn]  # one producer, started once


@pytest.mark.parametrize("fail_at", ["begin", "send", "commit", "offsets"])
def test_a_failed_transaction_discards_the_producer_and_the_retry_starts_afresh(
    fail_at: str,
) -> None:
    calls: list[str] = []
    committer = _committer(calls, fail_at=fail_at)
    with pytest.raises(KafkaTimeoutError):  # transient: the engine retries it
        asyncio.run(committer.commit(_batch()))
    assert calls[-1] == "stop"  # a new producer fences this one, aborting what it left open
    calls.clear()
    asyncio.run(committer.commit(_batch()))
    assert calls[0] == "start" and calls[-1] == "commit"
    assert committer.producers_started == 2


def test_being_fenced_is_permanent() -> None:
    calls: list[str] = []
    committer = _committer(calls, fail_at="commit", error=ProducerFenced())
    with pytest.raises(PermanentError, match="fenced"):
        asyncio.run(committer.commit(_batch()))


def test_an_authorisation_refusal_is_permanent() -> None:
    calls: list[str] = []
    error = TopicAuthorizationFailedError()
    committer = _committer(calls, fail_at="send", error=error)
    with pytest.raises(PermanentError, match="TopicAuthorizationFailedError"):
        asyncio.run(committer.commit(_batch()))


def test_a_producer_that_cannot_start_is_retried() -> None:
    calls: list[str] = []
    committer = _committer(calls, fail_at="start")
    with pytest.raises(KafkaTimeoutError):
        asyncio.run(committer.commit(_batch()))
    asyncio.run(committer.commit(_batch()))
    assert calls[-1] == "commit" and committer.producers_started == 1
