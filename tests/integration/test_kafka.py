"""The real broker: topics exist, and a consumer group resumes from its committed offset."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from ecgstream.io.kafka import make_admin, make_consumer, make_producer
from ecgstream.settings import Settings


async def _new_topic(settings: Settings, partitions: int) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def test_project_topics_exist(settings: Settings) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
        described = await admin.describe_topics([settings.topics.samples])
    finally:
        await admin.close()
    assert set(settings.topics.all()) <= topics
    assert len(described[0]["partitions"]) == settings.topics.partitions


async def _consume(settings: Settings, topic: str, group: str, count: int) -> list[bytes]:
    consumer = make_consumer(settings, topic, group_id=group)
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < count:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000, max_records=1), 30)
            for records in batch.values():
                values.extend(r.value for r in records)
        await consumer.commit()
        return values
    finally:
        await consumer.stop()


async def test_consumer_group_resumes_from_committed_offset(settings: Settings) -> None:
    topic = await _new_topic(settings, partitions=1)
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(20):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"device-1")
    finally:
        await producer.stop()

    group = f"group-{uuid.uuid4().hex[:8]}"
    first = await _consume(settings, topic, group, 7)
    assert first == [f"m{i}".encode() for i in range(7)]

    # a new member of the same group starts exactly where the first committed
    rest = await _consume(settings, topic, group, 13)
    assert rest == [f"m{i}".encode() for i in range(7, 20)]

    consumer = make_consumer(settings, group_id=group)
    await consumer.start()
    try:
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    assert committed == 20


async def test_same_key_same_partition(settings: Settings) -> None:
    topic = await _new_topic(settings, partitions=4)
    producer = make_producer(settings)
    await producer.start()
    try:
        partitions = {
            (await producer.send_and_wait(topic, b"x", key=b"bed-42")).partition for _ in range(10)
        }
    finally:
        await producer.stop()
    assert len(partitions) == 1
