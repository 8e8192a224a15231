"""The local stack's lifecycle (control plane): Kafka, PostgreSQL, Prometheus and the Ray head
as managed processes, their state directory, and the SQL migrations."""

__all__ = [  # the public modules; others are private by their leading underscore
    "kafka_broker",
    "kafka_security",
    "migrate",
    "prometheus_server",
    "rotation",
    "stack",
    "state",
    "station_server",
]
