"""Clients of the real services (Kafka, PostgreSQL), configured from `Settings`.

The domain modules of `ecgstream` never import these: only the runtime, the control plane, the
tools and the CLI do. The device simulator (`ecgstream replay`) is one of them.
"""

__all__ = [  # the public modules; others are private by their leading underscore
    "api_keys",
    "db",
    "device_keys",
    "device_simulator",
    "edge_forward",
    "edge_ingest",
    "kafka",
    "kafka_transactions",
    "mllp",
    "partition_fetcher",
    "registry",
    "sinks",
    "station_store",
]
