"""The secure broker: TLS listeners, SCRAM-SHA-512 users and ACLs (`cluster up --secure`).

Listeners (all on 127.0.0.1):
- `SASL_SSL` on `kafka_port`: clients prove who they are with SCRAM-SHA-512 over TLS;
- `SSL` on `kafka_mtls_port`: mutual TLS, the certificate's CN is the principal;
- `CONTROLLER` (SSL, client certificate required): only the broker itself holds one.

Principals and what the ACLs let each do (everything else is denied):
- `pipeline`: read ecg.samples (and staging), write the output topics, use `ecgstream-` groups,
  and commit in transactions as `ecgstream-consumer-` ids (one per consumer actor);
- `device`: write ecg.samples, nothing else;
- `subscriber` (nursing stations): read ecg.samples, ecg.beats and ecg.alerts, use `station-`
  groups (the central station's strips, tiles and HL7 forwarding);
- `pager`: write the escalations of unanswered alarms (ecg.alarms.escalated), nothing else;
- `edge`: an edge runner forwarding its results: write and read back beats and alerts in its own
  transactions;
- `admin`: a super user for the stack's own tooling (topics, ACLs, benchmarks, tests).
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cluster._tls import CertificateAuthority
from ecgstream.errors import StackError
from ecgstream.settings import Settings, read_secret_file, write_private_bytes, write_secret_file

USERS = ("admin", "pipeline", "device", "subscriber", "pager", "edge")
MTLS_CLIENTS = ("pipeline", "device")  # principals that also get a client certificate
MECHANISM = "SCRAM-SHA-512"
_CN_RULE = r"RULE:^CN=([a-zA-Z0-9._-]+)$/$1/,DEFAULT"


@dataclass(frozen=True)
class Grant:
    user: str
    operations: tuple[str, ...]
    resource: str  # topic, group, transactional-id
    names: tuple[str, ...]
    prefixed: bool = False


class KafkaSecurity:
    def __init__(self, settings: Settings, component_dir: Path) -> None:
        self._settings = settings
        self._users_dir = component_dir / "users"
        self._keystore = component_dir / "broker.p12"
        self._keystore_password = component_dir / "broker.p12.password"
        self.admin_properties = component_dir / "admin.properties"
        self._acl_marker = component_dir / "acls.applied"
        self.ca = CertificateAuthority(settings.tls_dir)

    # -- material ---------------------------------------------------------------------------

    def ensure_material(self) -> None:
        """CA, broker keystore, client certificates and user passwords (kept once made)."""
        self.ca.ensure()
        broker = self.ca.issue("broker", server=True)
        for name in MTLS_CLIENTS:
            self.ca.issue(name, server=False)
        for user in USERS:
            path = self._password_file(user)
            if not path.exists():
                write_secret_file(path, secrets.token_urlsafe(24))
        if not self._keystore_password.exists():
            write_secret_file(self._keystore_password, secrets.token_urlsafe(24))
        password = read_secret_file(self._keystore_password, hint="")
        key = serialization.load_pem_private_key(broker.key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(broker.cert.read_bytes())
        ca = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        # PKCS#12: Java reads it natively (its PEM keystore insists on encrypted keys)
        keystore = pkcs12.serialize_key_and_certificates(
            b"broker",
            key,  # type: ignore[arg-type]
            cert,
            [ca],
            serialization.BestAvailableEncryption(password.encode()),
        )
        write_private_bytes(self._keystore, keystore)
        write_secret_file(self.admin_properties, self._client_properties("admin"))

    def password(self, user: str) -> str:
        return read_secret_file(self._password_file(user), hint="run `cluster up --secure`")

    def store_password(self, user: str, password: str) -> None:
        """After the broker accepted a new password: the file every client reads."""
        write_secret_file(self._password_file(user), password)
        if user == "admin":
            write_secret_file(self.admin_properties, self._client_properties("admin"))

    def _password_file(self, user: str) -> Path:
        return self._users_dir / f"{user}.password"

    # -- broker configuration ---------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        local = self._settings.local
        port, mtls = local.kafka_port, local.kafka_mtls_port
        controller = local.kafka_controller_port
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},SSL://127.0.0.1:{mtls},"
            f"CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port},SSL://127.0.0.1:{mtls}",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL,SSL:SSL",
            "inter.broker.listener.name": "SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.ssl.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self._keystore),
            "ssl.keystore.password": read_secret_file(self._keystore_password, hint=""),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca.cert),
            "ssl.principal.mapping.rules": _CN_RULE,
            "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin;User:broker",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """`StorageTool format` arguments that create the SCRAM users with the cluster."""
        args: list[str] = []
        for user in USERS:
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={self.password(user)}]"]
        return args

    # -- ACLs -------------------------------------------------------------------------------

    def grants(self) -> list[Grant]:
        """What each principal may do (the same list k8s/base/kafka-users.yaml declares)."""
        topics = self._settings.topics
        inputs = (topics.samples, topics.samples_staging)
        outputs = (
            topics.beats,
            topics.alerts,
            topics.deadletter,
            topics.beats_shadow,
            topics.beats_staging,
        )
        read, write = ("Read", "Describe"), ("Write", "Describe")
        return [
            Grant("pipeline", read, "topic", inputs),
            Grant("pipeline", write, "topic", outputs),
            # the edge ingest reads edge results back to store them (ecgstream/io/edge_ingest)
            Grant("pipeline", read, "topic", (topics.beats, topics.alerts)),
            Grant("pipeline", read, "group", ("ecgstream-",), prefixed=True),
            # a consumer actor's transactional id is its name (ecgstream/io/kafka_transactions)
            Grant("pipeline", write, "transactional-id", ("ecgstream-consumer-",), prefixed=True),
            Grant("device", write, "topic", (topics.samples,)),
            Grant("subscriber", read, "topic", (topics.samples, topics.beats, topics.alerts)),
            Grant("subscriber", read, "group", ("station-",), prefixed=True),
            Grant("pager", write, "topic", (topics.escalations,)),
            Grant("edge", ("Read", "Write", "Describe"), "topic", outputs[:2]),
            Grant("edge", write, "transactional-id", ("ecgstream-edge-",), prefixed=True),
        ]

    def acl_commands(self) -> list[list[str]]:
        """`AclCommand` arguments, one invocation per grant."""
        commands = []
        for grant in self.grants():
            command = ["--add", "--allow-principal", f"User:{grant.user}"]
            for operation in grant.operations:
                command += ["--operation", operation]
            for name in grant.names:
                command += [f"--{grant.resource}", name]
            if grant.prefixed:
                command += ["--resource-pattern-type", "prefixed"]
            commands.append(command)
        return commands

    def apply_acls(self, java: str, classpath: str) -> None:
        """Grant the ACLs (idempotent); skipped when this exact set was applied already."""
        commands = self.acl_commands()
        digest = hashlib.sha256(repr(commands).encode()).hexdigest()
        if self._acl_marker.exists() and self._acl_marker.read_text().strip() == digest:
            return
        bootstrap = f"127.0.0.1:{self._settings.local.kafka_port}"
        running = [
            subprocess.Popen(
                [
                    java,
                    "-cp",
                    classpath,
                    "org.apache.kafka.tools.AclCommand",
                    "--bootstrap-server",
                    bootstrap,
                    "--command-config",
                    str(self.admin_properties),
                    *command,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for command in commands
        ]
        failures = []
        for process in running:
            output, _ = process.communicate(timeout=180)
            if process.returncode != 0:
                failures.append(output[-1500:])
        if failures:
            raise StackError("kafka", "AclCommand failed:\n" + "\n".join(failures))
        self._acl_marker.write_text(digest + "\n")

    def _client_properties(self, user: str) -> str:
        return "\n".join(
            [
                "security.protocol=SASL_SSL",
                f"sasl.mechanism={MECHANISM}",
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                f'required username="{user}" password="{self.password(user)}";',
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.ca.cert}",
            ]
        )
