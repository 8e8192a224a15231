"""Where results go: Kafka topics for subscribers and PostgreSQL for the record.

PostgreSQL writes are idempotent by key: a beat is (device, sample), an alarm its alarm id, the
end of an AF/VF episode an update of its alarm's row (`ON CONFLICT DO NOTHING`, `WHERE
end_sample IS NULL`). Kafka messages carry the key in the payload (`beat_id`; `alarm_id` with
`event` "raised" or "ended"): with transactions (`kafka_transactions.py`, the default) a
read_committed subscriber sees each once; without, a redelivered batch appears twice and
subscribers drop the repeats by key.

Each sink is a port of the delivery engine (`write(BatchOutput)`). Failures retrying cannot fix
are raised as `PermanentError`: PostgreSQL's SQLSTATE classes 28 (credentials), 42 (a missing
table or column, a missing privilege) and 22 (data the schema rejects); Kafka's authorisation
and message-size refusals. Connection loss and timeouts stay transient.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from ecgstream.delivery.ports import BatchOutput, PermanentError
from ecgstream.io.partition_fetcher import PERMANENT as KAFKA_PERMANENT
from ecgstream.messages import AlarmEvent, BeatResult, alarm_message, beat_message
from ecgstream.processing import DeadLetter
from ecgstream.settings import Settings
from ecgstream.wire import MAX_MESSAGE_BYTES

# what the broker refuses for good when writing: an ACL, or a message over its size limit
KAFKA_WRITE_REFUSED = (*KAFKA_PERMANENT, MessageSizeTooLargeError)
POSTGRES_PERMANENT = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.SyntaxOrAccessError,
    asyncpg.exceptions.DataError,
)


class KafkaSink:
    name = "kafka"

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, beats_topic: str | None = None
    ) -> None:
        self._topics = settings.topics
        self._beats_topic = beats_topic or settings.topics.beats
        self._producer = producer

    async def write(self, out: BatchOutput) -> None:
        try:
            await self.send(out.beats, out.alarms, out.letters, out.classes)
        except KAFKA_WRITE_REFUSED as exc:
            raise PermanentError(f"Kafka refused the batch: {type(exc).__name__}") from exc

    async def send(
        self,
        beats: Sequence[BeatResult],
        alarms: Sequence[AlarmEvent],
        dead_letters: Sequence[tuple[DeadLetter, bytes]],
        classes: Sequence[str],
    ) -> None:
        """Send everything and wait until the broker has acknowledged all of it."""
        futures = []
        for beat in beats:
            futures.append(
                await self._producer.send(
                    self._beats_topic, beat_message(beat, classes), key=beat.device_id.encode()
                )
            )
        for event in alarms:
            futures.append(
                await self._producer.send(
                    self._topics.alerts, alarm_message(event), key=event.alarm.device_id.encode()
                )
            )
        for letter, original in dead_letters:
            # keep the evidence, but never more than a valid chunk could be (oversize input)
            payload = original[:MAX_MESSAGE_BYTES]
            futures.append(
                await self._producer.send(
                    self._topics.deadletter,
                    payload,
                    headers=[
                        ("truncated", b"true" if len(payload) < len(original) else b"false"),
                        ("reason", letter.reason.encode()),
                        ("detail", letter.detail.encode()[:500]),
                        ("source", self._source(letter)),
                    ],
                )
            )
        if futures:
            await asyncio.gather(*futures)

    def _source(self, letter: DeadLetter) -> bytes:
        return f"{self._topics.samples}/{letter.partition}/{letter.offset}".encode()


BEATS_TABLES = ("beats", "beats_shadow", "beats_staging")


class PostgresSink:
    name = "postgres"

    def __init__(self, pool: asyncpg.Pool, beats_table: str = "beats") -> None:
        if beats_table not in BEATS_TABLES:  # it is put into SQL text below
            raise ValueError(f"unknown beats table {beats_table!r}")
        self._pool = pool
        self._beats_table = beats_table

    async def write(self, out: BatchOutput) -> None:
        try:
            await self.insert(out.beats, out.alarms)
        except POSTGRES_PERMANENT as exc:
            raise PermanentError(
                f"PostgreSQL refused the batch: {type(exc).__name__} "
                f"(SQLSTATE {exc.sqlstate}): {exc}"
            ) from exc

    async def insert(self, beats: Sequence[BeatResult], alarms: Sequence[AlarmEvent]) -> None:
        """One transaction per batch; re-delivered keys are ignored."""
        if not beats and not alarms:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            if beats:
                await conn.executemany(
                    f"""INSERT INTO {self._beats_table} (device_id, session_id, sample_index,
                            patient_ref, beat_time, label, probabilities, rr_prev_s,
                            model_version, latency_ms, signal_fault)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                        ON CONFLICT DO NOTHING""",
                    [
                        (
                            b.device_id,
                            b.session,
                            b.sample,
                            b.patient_id,
                            datetime.fromtimestamp(b.time_s, UTC),
                            b.label,
                            list(b.probabilities),
                            b.rr_prev_s,
                            b.model_version,
                            b.latency_ms,
                            b.signal_fault,
                        )
                        for b in beats
                    ],
                )
            raised = [e for e in alarms if not e.is_end]
            ended = [e for e in alarms if e.is_end]
            if raised:
                await conn.executemany(
                    """INSERT INTO alarms (alarm_id, device_id, patient_ref, kind, category,
                                           severity, start_sample, start_time, evidence,
                                           model_version)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                       ON CONFLICT (alarm_id) DO NOTHING""",
                    [
                        (
                            e.alarm.alarm_id,
                            e.alarm.device_id,
                            e.patient_id,
                            e.alarm.kind,
                            e.alarm.category,
                            e.alarm.severity,
                            e.alarm.start_sample,
                            datetime.fromtimestamp(e.alarm.start_time, UTC),
                            json.dumps(e.alarm.evidence),
                            e.model_version,
                        )
                        for e in raised
                    ],
                )
            if ended:  # after the inserts: an episode can open and end in one batch
                await conn.executemany(
                    """UPDATE alarms SET end_sample = $2, end_time = $3
                       WHERE alarm_id = $1 AND end_sample IS NULL""",
                    [
                        (
                            e.alarm.alarm_id,
                            e.ended_sample,
                            datetime.fromtimestamp(e.ended_time or e.alarm.start_time, UTC),
                        )
                        for e in ended
                    ],
                )
