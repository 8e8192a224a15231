"""The local stack's lifecycle (control plane): Kafka, PostgreSQL, Prometheus and the Ray head
as managed processes, their state directory, and the SQL migrations."""

__all__ = [  # the public modules; others are private by their leading underscore
    "kafka_broker",
    "kafka_security",
    "migrate",
    "postgres_server",
    "prometheus_server",
    "ray_head",
    "rotation",
    "stack",
    "state",
    "tls",
]
