"""Forwarding the outbox to Kafka, exactly once, across disconnections and restarts.

Each batch is one Kafka transaction (a fixed `transactional.id` per device, so a restarted
runner fences its own earlier incarnation and aborts what it left open). After the commit the
rows are marked sent in SQLite. A crash between the two is the only doubtful moment, so before
each transaction the runner records, per topic, the offset from which its messages may exist;
on (re)connection it reads its partition from there (read_committed) and marks what it finds as
sent. Nothing is sent twice and nothing unacknowledged is dropped.

Messages go to the server's own topics in the server's format (`ecgstream.messages`), keyed by
device id, so nursing stations see edge results as they see the stream's; the header
`origin: edge` tells the server's edge ingest (ecgstream/io/edge_ingest.py) to store them in
PostgreSQL.

Needs `aiokafka` (the one extra package of an edge device that forwards to Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgstream.edge.outbox import Outbox, Pending
from ecgstream.errors import ConfigurationError
from ecgstream.messages import EDGE_ORIGIN_HEADER

log = logging.getLogger("ecgstream.edge")

BATCH = 500
SCAN_FROM = "kafka_scan_from"  # outbox state: topic -> partition -> first doubtful offset
PRUNE_EVERY_S = 60.0


@dataclass(frozen=True)
class Retention:
    """How long acknowledged rows stay in the outbox (unsent rows always stay)."""

    keep_sent_s: float = 24 * 3600.0
    max_sent_rows: int = 200_000  # ~40 h of one patient's beats; ~100 MB at most


@dataclass(frozen=True)
class KafkaTarget:
    """Where results go and how the runner proves who it is: SCRAM-SHA-512 over TLS when a
    username is given, mutual TLS when a client certificate is, else plaintext (a lab only)."""

    bootstrap: str
    beats_topic: str = "ecg.beats"
    alerts_topic: str = "ecg.alerts"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def topic(self, kind: str) -> str:
        return self.beats_topic if kind == "beat" else self.alerts_topic

    def security_options(self) -> dict[str, Any]:
        if self.username is None and self.cert_file is None and self.ca_file is None:
            return {"security_protocol": "PLAINTEXT"}
        from aiokafka.helpers import create_ssl_context

        if self.key_file is not None:
            _refuse_readable_by_others(self.key_file)
        options: dict[str, Any] = {
            "security_protocol": "SASL_SSL" if self.username else "SSL",
            "ssl_context": create_ssl_context(
                cafile=self.ca_file, certfile=self.cert_file, keyfile=self.key_file
            ),
        }
        if self.username:
            if not self.password:
                raise ConfigurationError("a Kafka username needs its password")
            options.update(
                sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options


def read_password_file(path: str) -> str:
    """A password from a file only its owner can read (no pydantic on the device)."""
    _refuse_readable_by_others(path)
    return Path(path).read_text(encoding="utf-8").strip()


def _refuse_readable_by_others(path: str) -> None:
    import stat

    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        raise ConfigurationError(f"secret file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"secret file {path} is readable by others: chmod 600 it")


class KafkaForwarder:
    def __init__(
        self,
        outbox: Outbox,
        target: KafkaTarget,
        device_id: str,
        retention: Retention | None = None,
    ) -> None:
        try:
            import aiokafka  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "forwarding to Kafka needs aiokafka (pip install aiokafka)"
            ) from None
        self._outbox = outbox
        self._target = target
        self._device = device_id
        self._key = device_id.encode()
        self.sent = 0
        self.pruned = 0
        self.connected = False
        self._retention = retention or Retention()
        self._pruned_at = 0.0

    async def run(self, stop: asyncio.Event, idle_s: float = 0.5) -> None:
        """Forward until `stop` is set and the outbox is empty. While the broker is unreachable
        retry with backoff; once `stop` is set, one failure ends it (the rows stay queued)."""
        backoff = 1.0
        while True:
            try:
                await self._session(stop, idle_s)
                return
            except ConfigurationError:
                raise
            except Exception as exc:  # broker down, network gone: keep the rows, retry
                self.connected = False
                log.warning(
                    "Kafka unavailable (%s); results wait in the outbox", type(exc).__name__
                )
                if stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 30.0)

    async def _session(self, stop: asyncio.Event, idle_s: float) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self._target.bootstrap,
            **self._target.security_options(),
            transactional_id=f"ecgstream-edge-{self._device}",
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=15000,
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._target.bootstrap,
            **self._target.security_options(),
            isolation_level="read_committed",
            enable_auto_commit=False,
            request_timeout_ms=15000,
        )
        await producer.start()  # fences an earlier incarnation, aborting its open transaction
        try:
            await consumer.start()
            try:
                partitions = {
                    topic: await self._partition(consumer, topic)
                    for topic in (self._target.beats_topic, self._target.alerts_topic)
                }
                await self._reconcile(consumer, partitions)
                self.connected = True
                self.prune_if_due()
                while True:
                    rows = self._outbox.pending(BATCH)
                    if not rows:
                        if stop.is_set():
                            return
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), idle_s)
                        continue
                    await self._send(producer, consumer, partitions, rows)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def _partition(self, consumer: Any, topic: str) -> int:
        from aiokafka.partitioner import DefaultPartitioner

        available = consumer.partitions_for_topic(topic)
        if not available:
            await consumer._client.force_metadata_update()
            available = consumer.partitions_for_topic(topic)
        if not available:
            raise ConfigurationError(f"topic {topic} does not exist on the broker")
        ordered = sorted(available)
        return int(DefaultPartitioner()(self._key, ordered, ordered))

    def _scan_from(self) -> dict[str, int]:
        return json.loads(self._outbox.get(SCAN_FROM) or "{}")

    async def _reconcile(self, consumer: Any, partitions: dict[str, int]) -> None:
        """Mark as sent what an earlier incarnation committed but could not record."""
        from aiokafka import TopicPartition

        scan_from = self._scan_from()
        found: list[str] = []
        for topic, start in scan_from.items():
            tp = TopicPartition(topic, partitions[topic])
            end = (await consumer.end_offsets([tp]))[tp]
            if start >= end:
                continue
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for message in batch.get(tp, []):
                    if message.key == self._key:
                        payload = json.loads(message.value)
                        found.append(payload.get("beat_id") or payload.get("alarm_id"))
            scan_from[topic] = end
        if found:
            log.info("%d results were already in Kafka; marked sent", len(found))
        self._outbox.mark_sent(found, {SCAN_FROM: json.dumps(scan_from)})

    async def _send(
        self,
        producer: Any,
        consumer: Any,
        partitions: dict[str, int],
        rows: list[Pending],
    ) -> None:
        from aiokafka import TopicPartition

        scan_from = self._scan_from()
        topics = {self._target.topic(r.kind) for r in rows}
        missing = [t for t in topics if t not in scan_from]
        if missing:  # before the first transaction to a topic: from where to look after a crash
            tps = [TopicPartition(t, partitions[t]) for t in missing]
            ends = await consumer.end_offsets(tps)
            scan_from.update({tp.topic: ends[tp] for tp in tps})
            self._outbox.set(**{SCAN_FROM: json.dumps(scan_from)})
        await producer.begin_transaction()
        try:
            futures = [
                await producer.send(
                    self._target.topic(r.kind),
                    r.payload,
                    key=self._key,
                    partition=partitions[self._target.topic(r.kind)],
                    headers=[EDGE_ORIGIN_HEADER],  # the server's edge ingest stores these
                )
                for r in rows
            ]
            metadata = await asyncio.gather(*futures)
            await producer.commit_transaction()
        except BaseException:
            await _abort(producer)
            raise
        last: dict[str, int] = {}
        for record in metadata:
            last[record.topic] = max(last.get(record.topic, -1), record.offset)
        scan_from.update({topic: offset + 1 for topic, offset in last.items()})
        self._outbox.mark_sent([r.message_id for r in rows], {SCAN_FROM: json.dumps(scan_from)})
        self.sent += len(rows)
        self.prune_if_due()

    def prune_if_due(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            keep = self._retention
            self.pruned += self._outbox.prune(keep.keep_sent_s, keep.max_sent_rows)


async def _abort(producer: Any) -> None:
    # if the connection is gone the broker aborts it itself (timeout, or fencing on restart)
    with contextlib.suppress(Exception):
        await producer.abort_transaction()


def forward_until_empty(
    outbox: Outbox,
    target: KafkaTarget,
    device_id: str,
    timeout_s: float,
    retention: Retention | None = None,
) -> int:
    """One attempt to drain the outbox (the `forward` command); returns the rows sent."""

    async def drain() -> int:
        forwarder = KafkaForwarder(outbox, target, device_id, retention)
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(forwarder.run(stop), timeout_s)
        return forwarder.sent

    return asyncio.run(drain())
