"""Credential rotation on the secure local stack: new SCRAM passwords for Kafka principals
(with Kafka's own `kafka-configs` tool) and new passwords for the PostgreSQL roles.

A rotated secret is written to its 0600 file at once, so every client started afterwards uses
it. Clients already connected stay connected (SCRAM and PostgreSQL authenticate a connection
once); a long-running one picks the new secret up when restarted, e.g. `ecgstream stream down`
then `stream up`, which resumes from the committed offsets without losing a beat.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from cluster._postgres_server import APP_ROLE, PostgresServer
from cluster.kafka_broker import KafkaBroker
from cluster.kafka_security import MECHANISM, USERS
from cluster.migrate import SINK_ROLE
from cluster.state import StatePaths
from ecgstream.errors import StackError
from ecgstream.settings import Settings, read_secret_file, write_secret_file

POSTGRES_ROLES = (APP_ROLE, SINK_ROLE)


def rotate_kafka_user(settings: Settings, user: str) -> None:
    if user not in USERS:
        raise StackError("kafka", f"unknown Kafka principal {user!r}; one of {', '.join(USERS)}")
    broker = KafkaBroker(settings, StatePaths(settings.state_dir))
    security = broker.security
    password = secrets.token_urlsafe(24)
    result = subprocess.run(
        [
            broker.java(),
            "-cp",
            broker.classpath,
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            f"127.0.0.1:{settings.local.kafka_port}",
            "--command-config",
            str(security.admin_properties),
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            user,
            "--add-config",
            f"{MECHANISM}=[iterations=8192,password={password}]",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise StackError("kafka", f"kafka-configs refused the rotation:\n{result.stderr[-1500:]}")
    security.store_password(user, password)


def rotate_postgres_role(settings: Settings, role: str) -> None:
    if role not in POSTGRES_ROLES:
        raise StackError("postgres", f"unknown role {role!r}; one of {', '.join(POSTGRES_ROLES)}")
    server = PostgresServer(settings, StatePaths(settings.state_dir))
    dsn_file = settings.postgres_dsn_file if role == APP_ROLE else settings.postgres_sink_dsn_file
    old = read_secret_file(dsn_file, hint="run `ecgstream cluster up` first")
    password = secrets.token_urlsafe(24)

    async def alter() -> None:
        conn = await asyncpg.connect(server.superuser_dsn())
        try:
            literal = await conn.fetchval("SELECT quote_literal($1)", password)
            await conn.execute(f"ALTER ROLE {role} PASSWORD {literal}")
        finally:
            await conn.close()

    asyncio.run(alter())
    parts = urlsplit(old)
    netloc = f"{parts.username}:{quote(password)}@{parts.hostname}:{parts.port}"
    write_secret_file(dsn_file, urlunsplit(parts._replace(netloc=netloc)))
