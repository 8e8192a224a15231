"""Edge results into PostgreSQL, exactly once, through the stream's own PostgreSQL sink.

An edge runner publishes its beats and alarms to `ecg.beats` / `ecg.alerts` in Kafka
transactions (ecgstream/io/edge_forward.py), each record marked with the header
`origin: edge`. This ingest reads both topics `read_committed` in its own consumer group, keeps
the edge's records (the stream's own are in PostgreSQL already), turns them back into
`BeatResult` / `AlarmEvent` and writes each batch with `PostgresSink` (one transaction, the
natural keys' `ON CONFLICT DO NOTHING`), and only then commits its offsets. A crash between the
write and the commit re-reads the batch and the keys drop the repeat: each edge beat and alarm
is stored once. A record that does not parse is counted and skipped (it is on Kafka still).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from ecgstream.io.sinks import PostgresSink
from ecgstream.messages import (
    EDGE_ORIGIN_HEADER,
    AlarmEvent,
    BeatResult,
    alarm_from_message,
    beat_from_message,
)

log = logging.getLogger("ecgstream.edge_ingest")

INGEST_GROUP = "ecgstream-edge-ingest"
MAX_RECORDS = 2000


@dataclass
class IngestCounts:
    beats: int = 0
    alarms: int = 0
    skipped: int = 0  # stream records (already stored) seen and left
    malformed: int = 0
    batches: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def is_edge_record(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    return any((k, v) == EDGE_ORIGIN_HEADER for k, v in headers or ())


class EdgeResultsIngest:
    def __init__(
        self, consumer: AIOKafkaConsumer, sink: PostgresSink, beats_topic: str, alerts_topic: str
    ) -> None:
        self._consumer, self._sink = consumer, sink
        self._beats_topic, self._alerts_topic = beats_topic, alerts_topic
        self.counts = IngestCounts()

    async def run_once(self, timeout_ms: int = 1000) -> int:
        """Fetch, store, commit one batch; the number of edge results it held."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=MAX_RECORDS)
        if not batch:
            return 0
        beats: list[BeatResult] = []
        alarms: list[AlarmEvent] = []
        for tp, records in batch.items():
            for record in records:
                if not is_edge_record(record.headers):
                    self.counts.skipped += 1
                    continue
                try:
                    if tp.topic == self._beats_topic:
                        beats.append(beat_from_message(record.value))
                    else:
                        alarms.append(alarm_from_message(record.value))
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.counts.malformed += 1
        if beats or alarms:
            await self._sink.insert(beats, alarms)
        await self._consumer.commit()  # the positions after this batch: stored first
        self.counts.beats += len(beats)
        self.counts.alarms += len(alarms)
        self.counts.batches += 1
        return len(beats) + len(alarms)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a failing batch (database or broker away) is not committed, so it is
        fetched again after a pause."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # transient: the uncommitted batch comes again
                name = type(exc).__name__
                self.counts.errors[name] = self.counts.errors.get(name, 0) + 1
                log.warning("edge ingest batch failed (%s); retrying", name)
                await self._rewind()
                await asyncio.sleep(1.0)

    async def _rewind(self) -> None:
        """Back to the committed offsets, so the failed batch is read again."""
        for tp in self._consumer.assignment():
            committed = await self._consumer.committed(tp)
            if committed is not None:
                self._consumer.seek(tp, committed)
            else:
                await self._consumer.seek_to_beginning(tp)

    def stats(self) -> dict[str, Any]:
        return asdict(self.counts)
