"""The one typed settings object of ecgstream.

The environment is read here and nowhere else: every other module takes a `Settings` (or one of
its parts) as an argument, so actors and tests get exactly the configuration they are handed.

Variables use the prefix `ECGSTREAM_` and `__` between nesting levels, e.g.
`ECGSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092` or `ECGSTREAM_LOCAL__POSTGRES_PORT=5433`.
A service whose address is left unset is the one the local stack (`ecgstream cluster up`) runs.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecgstream.errors import ConfigurationError

DEFAULT_DOWNLOAD_DIR = Path.home() / ".cache" / "ecgstream" / "data"

Port = Annotated[int, Field(ge=1, le=65535)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Frozen):
    """Kafka topic names; other tools subscribe to these exact names."""

    samples: str = "ecg.samples"
    beats: str = "ecg.beats"
    alerts: str = "ecg.alerts"
    deadletter: str = "ecg.deadletter"
    beats_shadow: str = "ecg.beats.shadow"  # a shadow candidate's results (never alarms)
    samples_staging: str = "ecg.samples.staging"  # infravalidation replays
    beats_staging: str = "ecg.beats.staging"
    escalations: str = "ecg.alarms.escalated"  # unanswered high-priority alarms, for paging
    partitions: int = Field(8, ge=1, description="partitions per topic (the unit of load)")
    replication_factor: int = Field(1, ge=1, description="1 on the local single-node broker")

    def all(self) -> tuple[str, ...]:
        return (
            self.samples,
            self.beats,
            self.alerts,
            self.deadletter,
            self.beats_shadow,
            self.samples_staging,
            self.beats_staging,
            self.escalations,
        )


class KafkaSettings(_Frozen):
    bootstrap_servers: str | None = Field(
        None, description="host:port[,host:port]; unset = the local stack's broker"
    )
    client_id: str = "ecgstream"
    request_timeout_ms: int = Field(15_000, ge=1_000)
    transactions: bool = Field(
        True,
        description="publish each batch's beats, alarms and dead letters and commit its input "
        "offsets in one Kafka transaction (read_committed subscribers see each once); false = "
        "at-least-once outputs, deduplicated by key",
    )
    batch_wait_ms: int = Field(
        200,
        ge=0,
        le=1_000,
        description="how long the broker may hold a pipeline consumer's fetch to fill it "
        "(fetch.max.wait.ms): under real-time load, fewer and fuller batches (each costs a "
        "transaction, a model call and a database write) for at most this much latency",
    )
    batch_min_bytes: int = Field(
        256 * 1024,
        ge=1,
        description="the broker answers a pipeline consumer's fetch once this much is there "
        "(fetch.min.bytes), else after batch_wait_ms; ~150 one-second chunks",
    )
    transaction_timeout_ms: int = Field(
        10_000,
        ge=1_000,
        description="the broker aborts a transaction open this long (a consumer that died "
        "mid-batch holds its output partitions' read_committed readers back at most this long "
        "when nobody fences it first)",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] | None = Field(
        None,
        description="unset = the local stack's mode: SASL_SSL after `cluster up --secure`, "
        "else PLAINTEXT; SSL = mutual TLS (set cert_file and key_file)",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    username: str | None = Field(None, description="the SCRAM principal (SASL_SSL)")
    password: SecretStr | None = Field(None, description="its password; or password_file")
    password_file: Path | None = Field(None, description="a 0600 file holding the password")
    ca_file: Path | None = Field(None, description="PEM CA bundle that signs the brokers")
    cert_file: Path | None = Field(None, description="client certificate for mutual TLS")
    key_file: Path | None = Field(None, description="its private key (a 0600 file)")


class PostgresSettings(_Frozen):
    dsn: SecretStr | None = Field(
        None, description="postgresql://user:pass@host:port/db; unset = the local stack's database"
    )
    sink_dsn: SecretStr | None = Field(
        None,
        description="the stream sink's least-privilege role (INSERT/SELECT, no DDL); "
        "unset = dsn when dsn is set, else the local stack's sink role",
    )
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(4, ge=1)


class PrometheusSettings(_Frozen):
    url: str | None = Field(None, description="Prometheus base URL; unset = the local stack's")
    metrics_port: Port = Field(9464, description="port of ecgstream's own /metrics endpoint")
    metrics_host: str = Field(
        "127.0.0.1",
        description="interface of that endpoint; 0.0.0.0 where Prometheus scrapes the pod's IP",
    )


class RaySettings(_Frozen):
    address: str | None = Field(None, description="ray://... or host:port; unset = local head")
    namespace: str = "ecgstream"
    monitor_resource: str | None = Field(
        None,
        description="a custom Ray resource the monitor actor needs (pins it to the node that "
        "offers it, e.g. the head pod that Prometheus scrapes)",
    )


class ReleaseSettings(_Frozen):
    """Where released models live and which rules judge them."""

    artifact_store: Path | None = Field(
        None, description="directory of immutable model artifacts; unset = <state_dir>/models"
    )
    policy: Path | None = Field(
        None, description="the release policy file; unset = tuning/release-policy.toml"
    )


class IdentitySettings(_Frozen):
    """How a consumer knows a chunk came from the device it names (ecgstream/identity.py)."""

    require_signatures: bool = Field(
        True,
        description="refuse (dead-letter) chunks without their device's signature; false only "
        "for a closed test network",
    )
    fleet_secret: SecretStr | None = Field(
        None,
        description="the secret device keys derive from (>= 16 bytes, hex); unset = the local "
        "stack's <state_dir>/identity/fleet.key",
    )


class ApiSettings(_Frozen):
    """The REST API's default request budget per key (a key may carry its own)."""

    requests_per_minute: int = Field(1200, gt=0)
    burst: int = Field(60, gt=0, description="requests a key may send at once before pacing")


class PipelineSettings(_Frozen):
    lookback_s: float = Field(
        120.0,
        ge=0,
        description="seconds of input a consumer re-reads for a partition it takes over, to "
        "rebuild each device's state (those messages' outputs are suppressed)",
    )
    max_batch_chunks: int = Field(
        1000, ge=1, description="messages a consumer fetches and delivers as one batch at most"
    )


class ClassifierSettings(_Frozen):
    forward_batch_beats: int = Field(
        256,
        ge=1,
        description="beats per forward pass (on a CPU a few thousand at once spill the caches "
        "and run ~30 % slower per beat than a few hundred)",
    )
    max_batch_requests: int = Field(
        16, ge=1, description="consumer requests a Serve replica merges into one batch"
    )
    batch_wait_s: float = Field(
        0.005, ge=0, description="how long a replica waits for more requests to merge"
    )


class ScalingSettings(_Frozen):
    """The pool that scales itself (decision 100): the coordinator grows and shrinks the
    consumer pool on lag measured in seconds of input, with a band between the two thresholds
    where nothing changes, sustained-for times and a cooldown (every change moves partitions,
    whose new owners rebuild patient state); Serve scales the classifier on ongoing requests."""

    autoscale: bool = Field(
        False, description="the coordinator scales the consumer pool (else it stays as started)"
    )
    min_consumers: int = Field(1, ge=1)
    max_consumers: int = Field(4, ge=1, description="at most the samples topic's partitions")
    scale_out_lag_s: float = Field(
        10.0, gt=0, description="the most-behind consumer's lag above which the pool grows"
    )
    scale_in_lag_s: float = Field(
        2.0, ge=0, description="every consumer's lag below which the pool shrinks"
    )
    scale_out_after_s: float = Field(10.0, ge=0, description="lag above, sustained this long")
    scale_in_after_s: float = Field(60.0, ge=0, description="lag below, sustained this long")
    cooldown_s: float = Field(30.0, ge=0, description="no change sooner than this after one")
    skew_ratio: float = Field(
        2.0,
        gt=1,
        description="rebalance when the most-behind consumer's lag exceeds this many times the "
        "others' mean (and scale_in_lag_s), sustained scale_out_after_s",
    )
    classifier_min_replicas: int = Field(1, ge=1)
    classifier_max_replicas: int = Field(2, ge=1)
    classifier_target_ongoing_requests: float = Field(
        2.0, gt=0, description="Serve adds replicas when requests per replica exceed this"
    )
    classifier_upscale_delay_s: float = Field(5.0, ge=0)
    classifier_downscale_delay_s: float = Field(60.0, ge=0)
    classifier_metrics_interval_s: float = Field(
        10.0, gt=0, description="how often the callers report their ongoing requests to Serve"
    )
    classifier_look_back_s: float = Field(
        30.0, gt=0, description="the window Serve averages ongoing requests over"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ScalingSettings:
        if self.min_consumers > self.max_consumers:
            raise ValueError("scaling: min_consumers exceeds max_consumers")
        if self.classifier_min_replicas > self.classifier_max_replicas:
            raise ValueError("scaling: classifier_min_replicas exceeds classifier_max_replicas")
        if self.scale_in_lag_s >= self.scale_out_lag_s:
            raise ValueError("scaling: scale_in_lag_s must be below scale_out_lag_s (hysteresis)")
        return self

    def classifier_autoscaling(self) -> dict[str, float | int]:
        """Serve's `autoscaling_config` for the classifier deployment."""
        return {
            "min_replicas": self.classifier_min_replicas,
            "max_replicas": self.classifier_max_replicas,
            "target_ongoing_requests": self.classifier_target_ongoing_requests,
            "upscale_delay_s": self.classifier_upscale_delay_s,
            "downscale_delay_s": self.classifier_downscale_delay_s,
            "metrics_interval_s": self.classifier_metrics_interval_s,
            "look_back_period_s": self.classifier_look_back_s,
        }


class StationSettings(_Frozen):
    """The central station (`ecgstream station ...`): the nurses' live page and alarm handling."""

    host: str = Field("127.0.0.1", description="interface of the station's web server")
    port: Port = Field(28600, description="its port (HTTPS on a secure stack)")
    ward: str = Field("WARD", description="the ward's name: page title, HL7 point of care")
    escalate_after_s: float = Field(
        30.0, gt=0, description="an unacknowledged high-priority alarm escalates after this"
    )
    escalate_priorities: tuple[str, ...] = Field(
        ("high",), description="priorities that escalate (JSON list)"
    )
    max_silence_s: float = Field(120.0, gt=0, description="the longest silence a nurse may set")
    clear_after_s: float = Field(
        60.0, gt=0, description="non-latching alarms (low, technical) clear after this"
    )
    forget_bed_after_s: float = Field(
        900.0,
        gt=0,
        description="a bed that sent nothing this long leaves the page with its alarms (a "
        "monitor unplugged, a finished replay); it comes back when it sends again",
    )
    push_interval_s: float = Field(
        0.2, gt=0, le=2, description="how often the page gets new samples and states"
    )
    session_idle_s: float = Field(
        8 * 3600.0, gt=0, description="a login session ends after this long without a request"
    )
    login_link_valid_s: float = Field(900.0, gt=0, description="a one-time login link's life")
    alarm_lookback_s: float = Field(
        6 * 3600.0, ge=0, description="alarms (and their actions) a starting station reloads"
    )
    pager_username: str | None = Field(
        None,
        description="the SCRAM principal that writes the escalations (SASL_SSL deployments; "
        "the station reads as ECGSTREAM_KAFKA__USERNAME); unset = the same one",
    )
    pager_password: SecretStr | None = Field(None, description="its password")
    hl7_receiver: str | None = Field(
        None, description="host:port of the MLLP receiver for IHE PCD-04 alarms; unset = none"
    )
    hl7_ack_timeout_s: float = Field(10.0, gt=0)
    hl7_tls: bool = Field(False, description="MLLP over TLS (the stack's CA, or ca_file)")
    hl7_receiving_application: str = "ACM"
    hl7_receiving_facility: str = "HOSPITAL"
    tls_cert_file: Path | None = Field(
        None, description="HTTPS certificate; unset = the secure local stack's, else HTTP"
    )
    tls_key_file: Path | None = Field(None, description="its private key (a 0600 file)")


class LocalStackSettings(_Frozen):
    """Ports and sizes of the services `ecgstream cluster up` runs on this machine.

    Defaults avoid 10002-19999, the range Ray hands out to its worker processes.
    """

    kafka_port: Port = 29092
    kafka_controller_port: Port = 29093
    kafka_mtls_port: Port = Field(29094, description="secure stack only: the mutual-TLS listener")
    kafka_heap_mb: int = Field(512, ge=128)
    postgres_port: Port = 55432
    prometheus_port: Port = 29090
    ray_gcs_port: Port = 6390
    ray_dashboard_port: Port = 8265
    ray_metrics_port: Port = 28080
    ray_client_port: Port = 20001
    ray_agent_port: Port = 52365
    serve_http_port: Port = 8000  # Ray Serve's HTTP proxy: the REST API
    serve_haproxy: bool = Field(
        True, description="Serve's HAProxy ingress (a C proxy straight to the API replicas)"
    )
    # with HAProxy, each API replica listens itself: HTTP ports [min, min+100), gRPC the next 100
    serve_replica_port_min: Port = 30000
    haproxy_stats_port: Port = 28404
    haproxy_metrics_port: Port = 28101
    ray_num_cpus: int = Field(2, ge=1)
    ray_object_store_mb: int = Field(1024, ge=78)
    startup_timeout_s: float = Field(120.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ECGSTREAM_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    state_dir: Path = Field(Path(".ecgstream"), description="data dirs, logs, pids, ports")
    data_dir: Path | None = Field(
        None, description="WFDB records; unset = ../shared/data/mitdb if present, else the cache"
    )
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    postgres: PostgresSettings = PostgresSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    ray: RaySettings = RaySettings()
    release: ReleaseSettings = ReleaseSettings()
    api: ApiSettings = ApiSettings()
    identity: IdentitySettings = IdentitySettings()
    pipeline: PipelineSettings = PipelineSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    scaling: ScalingSettings = ScalingSettings()
    station: StationSettings = StationSettings()
    local: LocalStackSettings = LocalStackSettings()

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # -- resolved addresses: the external service if configured, else the local stack's --------

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap_servers or f"127.0.0.1:{self.local.kafka_port}"

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url or f"http://127.0.0.1:{self.local.prometheus_port}"

    @property
    def ray_address(self) -> str:
        return self.ray.address or f"127.0.0.1:{self.local.ray_gcs_port}"

    @property
    def records_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser().resolve()
        beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "data" / "mitdb"
        if beside_checkout.is_dir():
            return beside_checkout
        return DEFAULT_DOWNLOAD_DIR / "mitdb"

    @property
    def artifact_store(self) -> Path:
        store = self.release.artifact_store or self.state_dir / "models"
        return store.expanduser().resolve()

    @property
    def postgres_dsn_file(self) -> Path:
        return self.state_dir / "postgres" / "dsn"

    @property
    def postgres_sink_dsn_file(self) -> Path:
        return self.state_dir / "postgres" / "dsn.sink"

    @property
    def secure_marker(self) -> Path:
        """Present once `cluster up --secure` set this state dir up: TLS and credentials."""
        return self.state_dir / "secure"

    @property
    def local_secure(self) -> bool:
        return self.secure_marker.exists()

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    def to_json(self) -> str:
        """These settings for another process of the same deployment (a Ray actor, a Serve
        replica): everything but the secrets, which that process reads from its own environment
        or, on the local stack, from the secret files under the state dir."""
        return self.model_dump_json(exclude=_SECRETS)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        for section, fields in _SECRETS.items():
            for name in fields:
                value = os.environ.get(f"ECGSTREAM_{section.upper()}__{name.upper()}")
                if value:
                    data.setdefault(section, {})[name] = value
        return cls.model_validate(data)

    def postgres_dsn(self, role: Literal["owner", "sink"] = "owner") -> str:
        """The DSN to connect with: the owner role (migrations, registry, keys) or the stream
        sink's least-privilege role. Secret: never print or log the result."""
        if role == "sink":
            if self.postgres.sink_dsn is not None:
                return self.postgres.sink_dsn.get_secret_value()
            if self.postgres.dsn is None and self.postgres_sink_dsn_file.exists():
                return read_secret_file(self.postgres_sink_dsn_file, hint="")
        if self.postgres.dsn is not None:
            return self.postgres.dsn.get_secret_value()
        return read_secret_file(self.postgres_dsn_file, hint="run `ecgstream cluster up` first")

    @property
    def fleet_secret_file(self) -> Path:
        return self.state_dir / "identity" / "fleet.key"

    def fleet_secret(self) -> bytes | None:
        """The fleet secret device keys derive from (environment, else the local stack's 0600
        file), or None where neither exists. Secret: never print or log it."""
        if self.identity.fleet_secret is not None:
            text = self.identity.fleet_secret.get_secret_value()
        elif self.fleet_secret_file.exists():
            text = read_secret_file(self.fleet_secret_file, hint="")
        else:
            return None
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            raise ConfigurationError("identity.fleet_secret must be hex") from None
        if len(secret) < 16:
            raise ConfigurationError("identity.fleet_secret must be at least 16 bytes (32 hex)")
        return secret

    def kafka_password(self) -> str | None:
        """The configured SCRAM password (environment or 0600 file). Secret: never log it."""
        if self.kafka.password is not None:
            return self.kafka.password.get_secret_value()
        if self.kafka.password_file is not None:
            return read_secret_file(self.kafka.password_file, hint="set ECGSTREAM_KAFKA__PASSWORD")
        return None


# secrets never cross a process boundary inside settings (see Settings.to_json)
_SECRETS: dict[str, set[str]] = {
    "postgres": {"dsn", "sink_dsn"},
    "kafka": {"password"},
    "identity": {"fleet_secret"},
    "station": {"pager_password"},
}


def read_secret_file(path: Path, *, hint: str) -> str:
    """Read a secret from a file that only its owner may read (mode 0600 or stricter)."""
    check_private_file(path, hint=hint)
    return path.read_text().strip()


def check_private_file(path: Path, *, hint: str = "") -> None:
    """Refuse a secret (password, private key) that others on this machine could read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigurationError(f"secret file {path} does not exist: {hint}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"secret file {path} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it"
        )


def write_secret_file(path: Path, value: str) -> None:
    write_private_bytes(path, (value + "\n").encode())


def write_private_bytes(path: Path, value: bytes) -> None:
    """Write a secret into a file made 0600 before anything is written to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(value)


def load_settings() -> Settings:
    return Settings()
