"""`make demo`: bring the local stack up and push real MIT-BIH samples through Kafka.

For now the demo proves the plumbing: chunks of a real record go to `ecg.samples`, are read back
by offset, decoded and compared with what was sent, and the stack's status is printed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from ecgstream.chunking import record_chunks
from ecgstream.io.kafka import make_consumer, make_producer
from ecgstream.records import load_record
from ecgstream.settings import Settings
from ecgstream.wire import decode_chunk, encode_chunk


@dataclass(frozen=True)
class RoundTrip:
    seq: int
    partition: int
    offset: int
    n_samples: int
    n_bytes: int
    identical: bool


async def publish_and_read_back(
    settings: Settings, record_name: str, n_chunks: int, device_id: str = "demo-device-01"
) -> list[RoundTrip]:
    record = load_record(settings.records_dir, record_name)
    chunks = list(
        record_chunks(
            record,
            device_id=device_id,
            patient_id="demo-patient-01",
            start_time=time.time(),
            max_chunks=n_chunks,
        )
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        sent = []
        for chunk in chunks:
            payload = encode_chunk(chunk)
            meta = await producer.send_and_wait(
                settings.topics.samples, payload, key=chunk.device_id.encode()
            )
            sent.append((chunk, payload, meta))
    finally:
        await producer.stop()

    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        results = []
        for chunk, payload, meta in sent:
            tp = TopicPartition(meta.topic, meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            message = await asyncio.wait_for(consumer.getone(), timeout=10)
            results.append(
                RoundTrip(
                    seq=chunk.seq,
                    partition=meta.partition,
                    offset=meta.offset,
                    n_samples=chunk.n_samples,
                    n_bytes=len(payload),
                    identical=decode_chunk(message.value) == chunk,
                )
            )
        return results
    finally:
        await consumer.stop()


def print_round_trips(console: Console, record_name: str, results: list[RoundTrip]) -> None:
    table = Table(title=f"MIT-BIH record {record_name} through {len(results)} Kafka messages")
    for column in ("seq", "partition", "offset", "samples/lead", "bytes", "read back"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.seq),
            str(r.partition),
            str(r.offset),
            str(r.n_samples),
            str(r.n_bytes),
            "[green]identical[/]" if r.identical else "[red]DIFFERENT[/]",
        )
    console.print(table)
