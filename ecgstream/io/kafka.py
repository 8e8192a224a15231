"""aiokafka clients built from settings, so every producer and consumer is configured alike."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ecgstream.settings import Settings


def make_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """An idempotent producer (acks=all): retries never duplicate a message in a partition."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": None,
        # above the wire format's 1 MiB limit plus headers, below the broker's 2 MiB
        "max_request_size": 1536 * 1024,
        "request_timeout_ms": settings.kafka.request_timeout_ms,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: object
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits: offsets are committed only after outputs are durable."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "request_timeout_ms": settings.kafka.request_timeout_ms,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
