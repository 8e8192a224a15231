"""The delivery engine's fetcher and committer over one aiokafka consumer that owns explicitly
assigned partitions of the samples topic (the coordinator assigns them; no consumer group
rebalancing).

A partition handed to this consumer is read again from a bounded look-back (by timestamp)
before its committed offset, so the devices' state is rebuilt; those messages are marked
`replay` (their outputs were written by the previous owner). Authorisation failures are
permanent (retrying does not grant an ACL); everything else the broker answers is transient.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)

from ecgstream.delivery.ports import BatchOutput, Fetched, PermanentError
from ecgstream.identity import signature_of
from ecgstream.processing import InputMessage

T = TypeVar("T")
PERMANENT = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


async def classified(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Kafka call, turning the errors retrying cannot fix into `PermanentError`."""
    try:
        return await call()
    except PERMANENT as exc:
        raise PermanentError(f"Kafka refused: {type(exc).__name__}: {exc}") from exc


class PartitionFetcher:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        *,
        start_at_end: bool = False,
        lookback_s: float = 120.0,
        max_records: int = 1000,
        wait_ms: int = 200,
    ) -> None:
        self._consumer, self._topic = consumer, topic
        self._start_at_end = start_at_end  # a new mirror lane starts at the live end
        self._lookback_ms = int(lookback_s * 1000)
        self._max_records, self._wait_ms = max_records, wait_ms
        self.assigned: set[int] = set()
        self._replay_until: dict[int, int] = {}
        # per partition: the Kafka timestamp (ms) of the last message fetched, and whether it
        # was past the look-back (live input rather than state being rebuilt)
        self._last_ms: dict[int, int] = {}
        self._live: dict[int, bool] = {}

    async def assign(self, partitions: Iterable[int]) -> set[int]:
        """Own exactly these partitions; the new ones start at their look-back. Call it only
        while nothing is being fetched (the engine stopped). Returns the partitions dropped."""
        wanted = set(partitions)
        added, dropped = wanted - self.assigned, self.assigned - wanted
        self.assigned = wanted
        self._consumer.assign([TopicPartition(self._topic, p) for p in sorted(wanted)])
        for p in sorted(added):
            self._last_ms.pop(p, None)
            self._live[p] = False
            await self._seek_for_rebuild(TopicPartition(self._topic, p))
        return dropped

    async def fetch(self) -> Fetched | None:
        if not self.assigned:
            await asyncio.sleep(self._wait_ms / 1000)
            return None
        batch = await classified(
            lambda: self._consumer.getmany(timeout_ms=self._wait_ms, max_records=self._max_records)
        )
        messages: list[InputMessage] = []
        ends: dict[int, int] = {}
        for tp, records in batch.items():
            if tp.partition not in self.assigned or not records:
                continue  # fetched just before the partition was taken away
            until = self._replay_until.get(tp.partition, 0)
            messages += [input_message(r, r.offset < until) for r in records]
            ends[tp.partition] = records[-1].offset + 1
            self._last_ms[tp.partition] = records[-1].timestamp
            self._live[tp.partition] = records[-1].offset + 1 >= until
        return Fetched(messages, ends) if messages else None

    async def commit(self, out: BatchOutput) -> None:
        offsets = {TopicPartition(self._topic, p): o for p, o in out.ends.items()}
        await classified(lambda: self._consumer.commit(offsets))

    async def lag(self) -> dict[int, int]:
        """Messages not yet fetched, per owned partition (empty if the broker does not answer)."""
        lag: dict[int, int] = {}
        tps = [TopicPartition(self._topic, p) for p in sorted(self.assigned)]
        if tps:
            with contextlib.suppress(Exception):
                ends = await asyncio.wait_for(self._consumer.end_offsets(tps), timeout=5)
                for tp in tps:
                    lag[tp.partition] = max(0, ends[tp] - await self._consumer.position(tp))
        return lag

    def lag_seconds(
        self, lag: Mapping[int, int], now_ms: int | None = None
    ) -> dict[int, float | None]:
        """Lag in seconds of input per owned partition, from `lag()`'s counts: how long the
        oldest message not yet fetched has waited (it follows the last one fetched); 0 with
        nothing waiting; None while the partition's look-back is still being re-read (its live
        lag is not known yet)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out: dict[int, float | None] = {}
        for p, waiting in lag.items():
            if waiting == 0:
                out[p] = 0.0
            elif not self._live.get(p, False) or p not in self._last_ms:
                out[p] = None
            else:
                out[p] = max(0.0, (now_ms - self._last_ms[p]) / 1000)
        return out

    async def _seek_for_rebuild(self, tp: TopicPartition) -> None:
        consumer = self._consumer
        committed = await consumer.committed(tp)
        if committed is None and self._start_at_end:
            committed = (await consumer.end_offsets([tp]))[tp]
        if committed is None:
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            consumer.seek(tp, beginning)
            self._replay_until[tp.partition] = beginning
            return
        start = committed
        with contextlib.suppress(Exception):  # an empty or unreadable partition: no look-back
            consumer.seek(tp, max(0, committed - 1))
            previous = await asyncio.wait_for(consumer.getone(tp), timeout=5)
            found = await consumer.offsets_for_times(
                {tp: max(0, previous.timestamp - self._lookback_ms)}
            )
            if found.get(tp) is not None:
                start = min(found[tp].offset, committed)
        consumer.seek(tp, start)
        self._replay_until[tp.partition] = committed


def input_message(record: ConsumerRecord, replay: bool = False) -> InputMessage:
    """A fetched Kafka record as the processor's input (with its device signature header)."""
    return InputMessage(
        record.partition,
        record.offset,
        record.key,
        record.value,
        record.timestamp,
        replay,
        signature_of(record.headers),
    )
