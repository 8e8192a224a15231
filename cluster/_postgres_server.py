"""PostgreSQL from Debian's packages, on the stack's own data directory and port.

The server refuses to run as root, so when we are root it runs as the `postgres` user. The
superuser and the application role get random passwords kept in 0600 files in the state dir;
the application connects over TCP with SCRAM, never trust.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

import asyncpg

from cluster._process import (
    ManagedProcess,
    check_traversable,
    chown_tree,
    ensure_ports_free,
    probe_status,
    service_user,
    wait_until,
)
from cluster._tls import CertificateAuthority
from cluster.migrate import SINK_ROLE, migrate
from cluster.state import ComponentStatus, StatePaths
from ecgstream.errors import StackError
from ecgstream.settings import (
    Settings,
    read_secret_file,
    write_private_bytes,
    write_secret_file,
)

APP_ROLE = "ecgstream"
APP_DATABASE = "ecgstream"


def find_postgres_bindir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if not candidates:
        raise StackError(
            "postgres", "PostgreSQL server binaries not found: apt-get install postgresql"
        )
    return candidates[-1].parent


class PostgresServer:
    name = "postgres"

    def __init__(self, settings: Settings, paths: StatePaths) -> None:
        self._settings = settings
        self._port = settings.local.postgres_port
        self._dir = paths.component_dir("postgres")
        self._data = self._dir / "data"
        self._socket_dir = self._dir / "socket"
        self._superuser_password = self._dir / "superuser-password"
        self._dsn_file = settings.postgres_dsn_file
        self._sink_dsn_file = settings.postgres_sink_dsn_file
        self._tls = self._dir / "tls"
        self._user = service_user("postgres")
        self.process = ManagedProcess(
            name=self.name,
            pid_file=paths.pid_file(self.name),
            log_file=paths.log_file(self.name),
            marker=str(self._data),
            stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
        )

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._port}"

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        ensure_ports_free(self.name, {"postgres_port": self._port})
        bindir = find_postgres_bindir()
        check_traversable(self._dir, self._user)
        if not (self._data / "PG_VERSION").exists():
            self._initdb(bindir)
        self._socket_dir.mkdir(parents=True, exist_ok=True)
        self.process.log_file.parent.mkdir(parents=True, exist_ok=True)
        chown_tree(self._socket_dir, self._user)
        tls_options = self._prepare_tls() if self._settings.local_secure else []
        self.process.start(
            [
                str(bindir / "postgres"),
                *tls_options,
                "-D",
                str(self._data),
                "-p",
                str(self._port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self._socket_dir}",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=128MB",
            ],
            user=self._user,
        )

    def wait_ready(self) -> None:
        wait_until(
            lambda: asyncio.run(self._select_one(self.superuser_dsn())),
            timeout_s=self._settings.local.startup_timeout_s,
            process=self.process,
            what="SELECT 1 as the superuser",
        )

    def after_ready(self) -> None:
        asyncio.run(self._bootstrap())

    def stop(self) -> bool:
        return self.process.stop()

    def kill(self) -> bool:
        """SIGKILL (chaos tests): the next start recovers from an unclean shutdown."""
        return self.process.kill()

    def status(self) -> ComponentStatus:
        return probe_status(
            self.process,
            self.endpoint,
            lambda: asyncio.run(self._select_one(self._settings.postgres_dsn())),
            ok="SELECT 1 ok (application role)",
            failed="no answer",
        )

    # -- helpers -----------------------------------------------------------------------------

    def _initdb(self, bindir: Path) -> None:
        self._data.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        write_secret_file(self._superuser_password, password)
        pwfile = self._dir / "initdb-pwfile"
        write_secret_file(pwfile, password)
        chown_tree(self._dir, self._user)
        try:
            result = subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self._data),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                capture_output=True,
                text=True,
                check=False,
                user=self._user,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(self.name, f"initdb failed:\n{result.stderr[-2000:]}")

    def _prepare_tls(self) -> list[str]:
        """A server certificate from the stack's CA, and only TLS connections with a password
        accepted over TCP (the superuser's unix socket stays peer-authenticated)."""
        authority = CertificateAuthority(self._settings.tls_dir).ensure()
        server = authority.issue("postgres", server=True)
        self._tls.mkdir(parents=True, exist_ok=True)
        cert, key = self._tls / "server.crt", self._tls / "server.key"
        cert.write_bytes(server.cert.read_bytes())
        write_private_bytes(key, server.key.read_bytes())  # postgres refuses a readable key
        chown_tree(self._tls, self._user)
        hba = self._data / "pg_hba.conf"
        hba.write_text(
            "# written by ecgstream cluster up --secure: TLS with SCRAM, nothing in clear text\n"
            "local   all  postgres                peer\n"
            "hostssl all  all       127.0.0.1/32  scram-sha-256\n"
        )
        chown_tree(hba, self._user)
        return [
            "-c",
            "ssl=on",
            "-c",
            f"ssl_cert_file={cert}",
            "-c",
            f"ssl_key_file={key}",
            "-c",
            "ssl_min_protocol_version=TLSv1.2",
            "-c",
            "password_encryption=scram-sha-256",
        ]

    def _dsn(self, role: str, password: str, database: str) -> str:
        dsn = f"postgresql://{role}:{quote(password)}@127.0.0.1:{self._port}/{database}"
        if self._settings.local_secure:
            # verify-full: the server must prove it is the one our CA named for 127.0.0.1
            ca = quote(str(self._settings.tls_dir / "ca.pem"))
            dsn += f"?sslmode=verify-full&sslrootcert={ca}"
        return dsn

    def superuser_dsn(self) -> str:
        password = read_secret_file(self._superuser_password, hint="the data dir is incomplete")
        return self._dsn("postgres", password, "postgres")

    async def _bootstrap(self) -> None:
        """Create the owner and sink roles and the database (first start), apply migrations and
        grant the sink its privileges. DSN files are rewritten each time for the current mode."""
        passwords = {
            APP_ROLE: _existing_password(self._dsn_file),
            SINK_ROLE: _existing_password(self._sink_dsn_file),
        }
        write_secret_file(self._dsn_file, self._dsn(APP_ROLE, passwords[APP_ROLE], APP_DATABASE))
        write_secret_file(
            self._sink_dsn_file, self._dsn(SINK_ROLE, passwords[SINK_ROLE], APP_DATABASE)
        )
        conn = await asyncpg.connect(self.superuser_dsn())
        try:
            for role, password in passwords.items():
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                verb = "ALTER" if exists else "CREATE"
                # a password cannot be a bind parameter in DDL; quote it as a literal
                literal = await conn.fetchval("SELECT quote_literal($1)", password)
                await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD {literal}")
            if not await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", APP_DATABASE
            ):
                await conn.execute(f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE}")
        finally:
            await conn.close()
        app = await asyncpg.connect(self._settings.postgres_dsn())
        try:
            await migrate(app)
            # nobody but the owner creates objects, whatever the server version's default
            await app.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        finally:
            await app.close()

    @staticmethod
    async def _select_one(dsn: str) -> bool:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()


def _password_of(dsn: str) -> str:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(dsn).password
    if password is None:
        raise StackError("postgres", "a DSN file of the stack has no password")
    return unquote(password)


def _existing_password(dsn_file: Path) -> str:
    """The password a DSN file already holds (kept across restarts), or a fresh one."""
    if dsn_file.exists():
        return _password_of(read_secret_file(dsn_file, hint=""))
    return secrets.token_urlsafe(24)
