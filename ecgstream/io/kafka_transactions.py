"""Exactly-once Kafka outputs: a batch's beats, alarms and dead letters and its input offsets
committed in one Kafka transaction (the delivery engine's committer port).

A `read_committed` subscriber sees a batch's outputs only once the offsets that consumed its
input are committed with them: a crash before the commit aborts both (the batch is fetched and
sent again), a crash after it leaves nothing to redo. PostgreSQL is written before, as an
idempotent sink, so it never holds less than Kafka.

The transactional id is the consumer's name, one per consumer actor. Whoever takes a lost
consumer's partitions first fences its id (`fence`): the broker aborts its open transaction at
once (subscribers of the partitions it wrote to are held back until then) and refuses any later
commit of it, so a consumer declared lost while still running cannot publish twice. Any other
failure inside a transaction discards the producer: a new one fences the old incarnation, which
aborts what was left open, and the engine retries the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from ecgstream.delivery.ports import BatchOutput, PermanentError
from ecgstream.io.kafka import make_producer
from ecgstream.io.sinks import KAFKA_WRITE_REFUSED, KafkaSink
from ecgstream.settings import Settings

STOP_TIMEOUT_S = 10.0


def transactional_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    return make_producer(
        settings,
        transactional_id=transactional_id,
        transaction_timeout_ms=settings.kafka.transaction_timeout_ms,
    )


async def fence(settings: Settings, transactional_id: str) -> None:
    """Abort `transactional_id`'s open transaction and refuse its later commits (a producer
    with the same id starts: the broker bumps the id's epoch)."""
    producer = transactional_producer(settings, transactional_id)
    await producer.start()
    await producer.stop()


class TransactionalKafkaCommitter:
    """Publishes a batch and commits its input offsets in one transaction."""

    def __init__(
        self,
        new_producer: Callable[[], AIOKafkaProducer],
        new_sink: Callable[[AIOKafkaProducer], KafkaSink],
        samples_topic: str,
        group_id: str,
    ) -> None:
        self._new_producer, self._new_sink = new_producer, new_sink
        self._topic, self._group = samples_topic, group_id
        self._producer: AIOKafkaProducer | None = None
        self._sink: KafkaSink | None = None
        self.producers_started = 0

    async def commit(self, out: BatchOutput) -> None:
        producer, sink = await self._ready()
        offsets = {TopicPartition(self._topic, p): o for p, o in out.ends.items()}
        try:
            await producer.begin_transaction()
            await sink.send(out.beats, out.alarms, out.letters, out.classes)
            await producer.send_offsets_to_transaction(offsets, self._group)
            await producer.commit_transaction()
        except ProducerFenced as exc:
            await self.close()
            raise PermanentError(
                "fenced: another incarnation of this consumer owns its transactional id "
                "(this one was declared lost)"
            ) from exc
        except KAFKA_WRITE_REFUSED as exc:
            await self.close()
            raise PermanentError(f"Kafka refused the batch: {type(exc).__name__}") from exc
        except BaseException:
            await self.close()  # the next producer aborts what this one left open
            raise

    async def _ready(self) -> tuple[AIOKafkaProducer, KafkaSink]:
        if self._producer is None or self._sink is None:
            producer = self._new_producer()
            try:
                await producer.start()  # fences the previous incarnation of the id
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer, self._sink = producer, self._new_sink(producer)
            self.producers_started += 1
        return self._producer, self._sink

    async def close(self) -> None:
        producer, self._producer, self._sink = self._producer, None, None
        if producer is not None:
            with contextlib.suppress(Exception):  # a broker that is gone: do not wait for it
                await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
