"""aiokafka clients built from settings, so every producer and consumer is configured alike,
including how it proves who it is: nothing connects in clear text on a secure deployment."""

from __future__ import annotations

from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from ecgstream.errors import ConfigurationError
from ecgstream.settings import Settings, check_private_file, read_secret_file

# The principals of the secure local stack and what its ACLs let each do (cluster/kafka_acls.py).
# On a configured deployment each process runs with the credentials its environment holds, and
# the role only matters on the local stack.
KafkaRole = Literal["pipeline", "device", "subscriber", "pager", "edge", "admin"]


def security_options(settings: Settings, role: KafkaRole = "pipeline") -> dict[str, object]:
    """The aiokafka keyword arguments that encrypt and authenticate a client."""
    kafka = settings.kafka
    if kafka.security_protocol is None:
        if kafka.bootstrap_servers is None and settings.local_secure:
            return _local_secure_options(settings, role)
        return {"security_protocol": "PLAINTEXT"}
    if kafka.security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    if kafka.security_protocol == "SSL" and (kafka.cert_file is None or kafka.key_file is None):
        raise ConfigurationError(
            "Kafka security_protocol SSL is mutual TLS: set ECGSTREAM_KAFKA__CERT_FILE and "
            "ECGSTREAM_KAFKA__KEY_FILE"
        )
    if kafka.key_file is not None:
        check_private_file(kafka.key_file)
    options: dict[str, object] = {
        "security_protocol": kafka.security_protocol,
        "ssl_context": create_ssl_context(
            cafile=_path(kafka.ca_file),
            certfile=_path(kafka.cert_file),
            keyfile=_path(kafka.key_file),
        ),
    }
    if kafka.security_protocol == "SASL_SSL":
        username, password = kafka.username, settings.kafka_password()
        station = settings.station
        if role == "pager" and station.pager_username is not None:  # the station's second principal
            username = station.pager_username
            password = station.pager_password.get_secret_value() if station.pager_password else None
        if username is None or password is None:
            raise ConfigurationError(
                "Kafka SASL_SSL needs ECGSTREAM_KAFKA__USERNAME and ECGSTREAM_KAFKA__PASSWORD "
                "(or ECGSTREAM_KAFKA__PASSWORD_FILE)"
            )
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=username,
            sasl_plain_password=password,
        )
    return options


def local_password_file(settings: Settings, role: KafkaRole) -> str:
    return str(settings.state_dir / "kafka" / "users" / f"{role}.password")


def _local_secure_options(settings: Settings, role: KafkaRole) -> dict[str, object]:
    from pathlib import Path

    password = read_secret_file(
        Path(local_password_file(settings, role)), hint="run `ecgstream cluster up --secure`"
    )
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(settings.tls_dir / "ca.pem")),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": role,
        "sasl_plain_password": password,
    }


def _path(value: object) -> str | None:
    return None if value is None else str(value)


def make_admin(settings: Settings, role: KafkaRole = "admin") -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.kafka.client_id}-admin",
        request_timeout_ms=settings.kafka.request_timeout_ms,
        **security_options(settings, role),
    )


def make_producer(
    settings: Settings, role: KafkaRole = "pipeline", **overrides: object
) -> AIOKafkaProducer:
    """An idempotent producer (acks=all): retries never duplicate a message in a partition."""
    options: dict[str, object] = {
        **security_options(settings, role),
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
    settings: Settings,
    *topics: str,
    group_id: str | None,
    role: KafkaRole = "pipeline",
    **overrides: object,
) -> AIOKafkaConsumer:
    """A consumer that never auto-commits: offsets are committed only after outputs are durable."""
    options: dict[str, object] = {
        **security_options(settings, role),
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
