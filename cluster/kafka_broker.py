"""A single-node Apache Kafka broker in KRaft mode, started from jars Maven resolves.

The release tarball is not needed: `pom.xml` beside this module names the broker artifact, Maven
copies its runtime classpath into the state dir once (and caches it in ~/.m2), and we run the
broker's own main class, `kafka.Kafka`, exactly as `bin/kafka-server-start.sh` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from importlib import resources

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cluster._process import ManagedProcess, ensure_ports_free, probe_status, wait_until
from cluster.kafka_security import KafkaSecurity
from cluster.state import ComponentStatus, StatePaths
from ecgstream.errors import StackError
from ecgstream.io.kafka import make_admin
from ecgstream.settings import Settings, write_secret_file

_JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")


class KafkaBroker:
    name = "kafka"

    def __init__(self, settings: Settings, paths: StatePaths) -> None:
        self._settings = settings
        self._local = settings.local
        self._dir = paths.component_dir("kafka")
        self._lib = self._dir / "lib"
        self._data = self._dir / "data"
        self._properties = self._dir / "server.properties"
        self.security = KafkaSecurity(settings, self._dir)
        self._secure_data = self._dir / "data-has-users"
        self.process = ManagedProcess(
            name=self.name,
            pid_file=paths.pid_file(self.name),
            log_file=paths.log_file(self.name),
            marker=str(self._properties),
        )

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._local.kafka_port}"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def classpath(self) -> str:
        return f"{self._lib}/*"

    @staticmethod
    def java() -> str:
        return _require("java", "install a Java 17+ runtime (Debian: default-jre-headless)")

    @property
    def secure(self) -> bool:
        return self._settings.local_secure

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        ports = {
            "kafka_port": self._local.kafka_port,
            "kafka_controller_port": self._local.kafka_controller_port,
        }
        if self.secure:
            ports["kafka_mtls_port"] = self._local.kafka_mtls_port
        ensure_ports_free(self.name, ports)
        java = _require("java", "install a Java 17+ runtime (Debian: default-jre-headless)")
        self._ensure_jars()
        if self.secure:
            self.security.ensure_material()
        self._write_properties()
        formatted = (self._data / "meta.properties").exists()
        if formatted and self.secure and not self._secure_data.exists():
            raise StackError(
                self.name,
                f"this broker's data ({self._data}) was created without --secure and has no "
                "users: stop the stack and remove that directory (its topics are lost) or use "
                "a fresh state dir",
            )
        if not formatted:
            self._format_storage(java)
        log_config = resources.files("cluster") / "kafka" / "log4j2.properties"
        self.process.start(
            [
                java,
                f"-Xms{self._local.kafka_heap_mb}m",
                f"-Xmx{self._local.kafka_heap_mb}m",
                *_JVM_FLAGS,
                f"-Dlog4j2.configurationFile={log_config}",
                f"-Dkafka.logs.dir={self._dir / 'logs'}",
                "-cp",
                f"{self._lib}/*",
                "kafka.Kafka",
                str(self._properties),
            ]
        )

    def wait_ready(self) -> None:
        wait_until(
            lambda: asyncio.run(self._metadata_round_trip()),
            timeout_s=self._local.startup_timeout_s,
            process=self.process,
            what="a metadata round trip with the broker",
            interval_s=1.0,
        )

    def after_ready(self) -> None:
        asyncio.run(ensure_topics(self._settings))
        if self.secure:
            self.security.apply_acls(_require("java", ""), f"{self._lib}/*")

    def stop(self) -> bool:
        return self.process.stop()

    def kill(self) -> bool:
        """SIGKILL (chaos tests): the next start recovers from an unclean shutdown."""
        return self.process.kill()

    def status(self) -> ComponentStatus:
        return probe_status(
            self.process,
            self.endpoint,
            lambda: asyncio.run(self._metadata_round_trip()),
            ok="metadata round trip ok",
            failed="no metadata",
        )

    # -- helpers -----------------------------------------------------------------------------

    def _ensure_jars(self) -> None:
        if self._lib.is_dir() and any(self._lib.glob("kafka-tools-[0-9]*.jar")):
            return
        mvn = _require("mvn", "install Maven (Debian: maven)")
        pom = resources.files("cluster") / "kafka" / "pom.xml"
        self._lib.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self._lib}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self._lib, ignore_errors=True)
            raise StackError(
                self.name, f"Maven could not resolve the broker jars:\n{result.stdout}"
            )

    def _write_properties(self) -> None:
        port, controller = self._local.kafka_port, self._local.kafka_controller_port
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._data),
            "num.partitions": str(self._settings.topics.partitions),
            "auto.create.topics.enable": "false",
            # one node: the defaults (3 replicas, min ISR 2) would keep the coordinators down
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            # a dead consumer's unfenced transaction is aborted within about a second of its
            # timeout (default 10 s), not up to 10 s later: read_committed readers wait on it
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.num.partitions": "1",
            "log.retention.hours": "24",
            # room above the wire format's 1 MiB limit, so oversize chunks reach the validator
            # and the dead-letter topic instead of failing in the producer
            "message.max.bytes": str(2 * 1024 * 1024),
        }
        if self.secure:
            lines.update(self.security.properties())
        # 0600: on the secure stack it holds the keystore's password
        write_secret_file(self._properties, "".join(f"{k}={v}\n" for k, v in lines.items()))

    def _format_storage(self, java: str) -> None:
        classpath = f"{self._lib}/*"
        cluster_id = _run_java(java, classpath, "kafka.tools.StorageTool", "random-uuid").strip()
        _run_java(
            java,
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self._properties),
            *(self.security.format_arguments() if self.secure else []),
        )
        if self.secure:
            self._secure_data.write_text("SCRAM users created at format time\n")

    async def _metadata_round_trip(self) -> bool:
        # while the broker boots, aiokafka logs every refused connection: not news here
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        admin = make_admin(self._settings)
        await admin.start()
        try:
            await admin.describe_cluster()
            return True
        finally:
            await admin.close()


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the project's topics if missing (the broker does not auto-create). Idempotent."""
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topics.partitions,
                replication_factor=settings.topics.replication_factor,
            )
            for name in settings.topics.all()
            if name not in existing
        ]
        if wanted:
            # another process may have created them since we listed
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


def _run_java(java: str, classpath: str, main: str, *args: str) -> str:
    result = subprocess.run(
        [java, "-cp", classpath, main, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StackError("kafka", f"{main} {' '.join(args[:1])} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def _require(program: str, hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise StackError("system", f"'{program}' is not on PATH: {hint}")
    return path
