"""The secure stack (`ecgstream cluster up --secure`) on its own state dir and ports: the real
broker with SASL_SSL, mTLS and ACLs, PostgreSQL with hostssl only and a least-privilege sink
role, the REST API over HTTPS, and the whole pipeline end to end through all of it."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from cluster._tls import CertificateAuthority
from ecgstream.io.device_simulator import REPLAY_SESSION, replay
from ecgstream.io.kafka import make_consumer, make_producer
from ecgstream.settings import (
    KafkaSettings,
    LocalStackSettings,
    PrometheusSettings,
    Settings,
    StationSettings,
)
from tests.integration.conftest import TEST_PORTS, run_cli, service_state_dir
from tests.integration.pipeline_support import (
    RECORDS,
    kafka_beats,
    offline_reference,
    topic_messages,
    wait_for_beats,
)

SECURE_PORTS = {
    **TEST_PORTS,
    "kafka_port": 29392,
    "kafka_controller_port": 29393,
    "kafka_mtls_port": 29394,
    "postgres_port": 55462,
    "prometheus_port": 29390,
    "ray_gcs_port": 6393,
    "ray_dashboard_port": 8268,
    "ray_metrics_port": 28083,
    "ray_client_port": 20005,
    "ray_agent_port": 52369,
    "serve_http_port": 28010,
    "serve_replica_port_min": 30600,
    "haproxy_stats_port": 28407,
    "haproxy_metrics_port": 28104,
}
SECURE_METRICS_PORT = 29466
SECURE_STATION_PORT = 28710


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args, timeout=400)


@pytest.fixture(scope="module")
def secure() -> Iterator[Settings]:
    state_dir = service_state_dir("ecgstream-secure-")
    settings = Settings(
        state_dir=state_dir,
        prometheus=PrometheusSettings(metrics_port=SECURE_METRICS_PORT),
        local=LocalStackSettings(**SECURE_PORTS, ray_object_store_mb=512),
        station=StationSettings(port=SECURE_STATION_PORT),
    )
    try:
        up = _cli(settings, "cluster", "up", "--secure")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "secure" in up.stdout
        yield settings
    finally:
        import ray

        ray.shutdown()
        _cli(settings, "cluster", "down")
        shutil.rmtree(state_dir, ignore_errors=True)


def _with_kafka(settings: Settings, **kafka: object) -> Settings:
    """The same stack, reached with explicitly configured Kafka security (as a deployment)."""
    merged = {"bootstrap_servers": settings.kafka_bootstrap, **kafka}
    return settings.model_copy(update={"kafka": KafkaSettings(**merged)})  # type: ignore[arg-type]


def _password(settings: Settings, user: str) -> str:
    return (settings.state_dir / "kafka" / "users" / f"{user}.password").read_text().strip()


def _foreign_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA nobody trusts, and a client certificate it signed for CN=pipeline."""
    mallory = CertificateAuthority(directory).ensure()
    client = mallory.issue("pipeline", server=False)
    return mallory.cert, client.cert, client.key


async def _can_produce(
    settings: Settings, topic: str, role: str = "pipeline", timeout_ms: int = 8000
) -> None:
    """Send one message; a denied topic raises once the metadata wait of `timeout_ms` ends."""
    producer = make_producer(settings, role, request_timeout_ms=timeout_ms)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(producer.start(), 30)
        # not a chunk (on ecg.samples it is dead-lettered) nor any device's beat
        probe = b'{"device": "probe"}'
        await asyncio.wait_for(producer.send_and_wait(topic, probe, key=b"probe"), 30)
    finally:
        await producer.stop()


# -- Kafka ------------------------------------------------------------------------------------


async def test_kafka_refuses_plaintext_wrong_passwords_and_untrusted_certificates(
    secure: Settings, tmp_path: Path
) -> None:
    samples = secure.topics.samples
    await _can_produce(secure, samples, "device")  # the right credentials work

    foreign_ca, foreign_cert, foreign_key = _foreign_ca(tmp_path / "mallory")
    ca = secure.tls_dir / "ca.pem"
    password = _password(secure, "device")
    refused = {
        "no credentials (plaintext)": _with_kafka(secure, security_protocol="PLAINTEXT"),
        "wrong password": _with_kafka(
            secure,
            security_protocol="SASL_SSL",
            username="device",
            password=password + "x",
            ca_file=ca,
        ),
        "unknown user": _with_kafka(
            secure, security_protocol="SASL_SSL", username="mallory", password=password, ca_file=ca
        ),
        "untrusted broker certificate": _with_kafka(
            secure,
            security_protocol="SASL_SSL",
            username="device",
            password=password,
            ca_file=foreign_ca,
        ),
        "client certificate from another CA": _with_kafka(
            secure,
            bootstrap_servers=f"127.0.0.1:{secure.local.kafka_mtls_port}",
            security_protocol="SSL",
            ca_file=ca,
            cert_file=foreign_cert,
            key_file=foreign_key,
        ),
        "mTLS listener without a client certificate": _with_kafka(
            secure,
            bootstrap_servers=f"127.0.0.1:{secure.local.kafka_mtls_port}",
            security_protocol="SASL_SSL",
            username="device",
            password=password,
            ca_file=ca,
        ),
    }
    for what, settings in refused.items():
        with pytest.raises((KafkaError, ssl.SSLError, OSError, TimeoutError)):
            await _can_produce(settings, samples)
            pytest.fail(f"Kafka accepted a client with {what}")


async def test_mutual_tls_clients_are_their_certificates_principal(secure: Settings) -> None:
    tls = secure.tls_dir
    device = _with_kafka(
        secure,
        bootstrap_servers=f"127.0.0.1:{secure.local.kafka_mtls_port}",
        security_protocol="SSL",
        ca_file=tls / "ca.pem",
        cert_file=tls / "device.crt",
        key_file=tls / "device.key",
    )
    await _can_produce(device, secure.topics.samples)
    with pytest.raises(TopicAuthorizationFailedError):  # CN=device is User:device: no beats
        await _can_produce(device, secure.topics.beats)


async def test_acls_give_each_principal_only_its_topics(secure: Settings) -> None:
    topics = secure.topics
    await _can_produce(secure, topics.samples, "device")
    await _can_produce(secure, topics.beats, "pipeline")
    await _can_produce(secure, topics.escalations, "pager")  # the station's escalations
    for role, topic in [
        ("device", topics.beats),
        ("device", topics.alerts),
        ("subscriber", topics.beats),
        ("subscriber", topics.escalations),
        ("pager", topics.alerts),
        ("pipeline", topics.samples),
    ]:
        # a principal that may write no topic at all is refused its producer id already
        with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
            await _can_produce(secure, topic, role, timeout_ms=3000)
            pytest.fail(f"{role} could write {topic}")

    async def read(role: str, topic: str) -> tuple[set[str], list]:
        """(the topics this principal may see, what it reads of `topic` from the start)."""
        consumer = make_consumer(
            secure,
            group_id=None,
            role=role,
            request_timeout_ms=5000,  # type: ignore[arg-type]
        )
        await consumer.start()
        try:
            visible = set(await consumer.topics())
            # from the earliest offset (the consumers' auto_offset_reset)
            consumer.assign([TopicPartition(topic, p) for p in range(topics.partitions)])
            batch = await consumer.getmany(timeout_ms=2000)
            return visible, [m for ms in batch.values() for m in ms]
        finally:
            await consumer.stop()

    # a bedside device sees and reads nobody's results; the central station's subscriber reads
    # the signal (its strips), the results and the alarms, and writes nothing
    assert await read("device", topics.beats) == ({topics.samples}, [])
    visible, samples = await read("subscriber", topics.samples)
    assert visible == {topics.samples, topics.beats, topics.alerts}
    assert samples
    assert (await read("subscriber", topics.beats))[1]
    assert (await read("pipeline", topics.samples))[1]


# -- PostgreSQL -------------------------------------------------------------------------------


async def test_postgres_requires_verified_tls_and_the_right_password(
    secure: Settings, tmp_path: Path
) -> None:
    dsn = secure.postgres_dsn()
    assert "sslmode=verify-full" in dsn
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()

    base = dsn.split("?")[0]
    foreign_ca, _, _ = _foreign_ca(tmp_path / "mallory")
    user, rest = base.removeprefix("postgresql://").split(":", 1)
    wrong_password = f"postgresql://{user}:wrong@{rest.split('@', 1)[1]}"
    ca = secure.tls_dir / "ca.pem"
    refused = {
        "plaintext": (base + "?sslmode=disable", asyncpg.InvalidAuthorizationSpecificationError),
        "wrong password": (
            f"{wrong_password}?sslmode=verify-full&sslrootcert={ca}",
            asyncpg.InvalidPasswordError,
        ),
        "untrusted server certificate": (
            f"{base}?sslmode=verify-full&sslrootcert={foreign_ca}",
            ssl.SSLCertVerificationError,
        ),
    }
    for what, (candidate, error) in refused.items():
        with pytest.raises(error):
            await asyncpg.connect(candidate, timeout=10)
            pytest.fail(f"PostgreSQL accepted a connection with {what}")


async def test_the_sink_role_inserts_and_selects_but_changes_nothing_else(
    secure: Settings,
) -> None:
    conn = await asyncpg.connect(secure.postgres_dsn("sink"))
    try:
        assert await conn.fetchval("SELECT current_user") == "ecgstream_sink"
        await conn.execute(
            """INSERT INTO beats (device_id, sample_index, patient_ref, beat_time, label,
               probabilities, model_version) VALUES ('sec-0000', 1, 'pt-x', now(), 'N',
               '{1,0,0,0}', 'v')"""
        )
        assert await conn.fetchval("SELECT count(*) FROM beats WHERE device_id = 'sec-0000'")
        for statement in [
            "UPDATE beats SET label = 'V' WHERE device_id = 'sec-0000'",
            "DELETE FROM beats WHERE device_id = 'sec-0000'",
            "TRUNCATE beats",
            "DROP TABLE beats",
            "CREATE TABLE stolen (x int)",
            "ALTER TABLE beats ADD COLUMN x int",
            "SELECT * FROM api_keys",
            "INSERT INTO model_aliases (alias, version) VALUES ('production', 'evil')",
        ]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
                pytest.fail(f"the sink role may run: {statement}")
    finally:
        await conn.close()


async def test_rotated_credentials_work_at_once_and_the_old_ones_are_refused(
    secure: Settings,
) -> None:
    old_device = _password(secure, "device")
    old_sink_dsn = secure.postgres_dsn("sink")
    rotated = _cli(
        secure,
        "cluster",
        "rotate-secrets",
        "--kafka-user",
        "device",
        "--postgres-role",
        "ecgstream_sink",
    )
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert _password(secure, "device") != old_device
    await _can_produce(secure, secure.topics.samples, "device")  # reads the new secret file
    stale = _with_kafka(
        secure,
        security_protocol="SASL_SSL",
        username="device",
        password=old_device,
        ca_file=secure.tls_dir / "ca.pem",
    )
    with pytest.raises(KafkaError):
        await _can_produce(stale, secure.topics.samples)

    assert secure.postgres_dsn("sink") != old_sink_dsn
    conn = await asyncpg.connect(secure.postgres_dsn("sink"))
    await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(old_sink_dsn, timeout=10)


def test_an_edge_runner_forwards_over_tls_as_the_edge_principal_only(
    secure: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    import json

    from ecgstream.edge.export import export_bundle

    bundle = tmp_path / "bundle"
    export_bundle(None, bundle)
    edge = str(Path(sys.executable).with_name("ecgstream-edge"))
    users = secure.state_dir / "kafka" / "users"

    def run(device: str, user: str) -> dict:
        done = subprocess.run(
            [edge, "run", "--bundle", str(bundle), "--device", device,
             "--outbox", str(tmp_path / f"{device}.sqlite"), "--wfdb", str(mitdb_dir / "119"),
             "--speed", "0", "--seconds", "60", "--drain-s", "10",
             "--kafka", secure.kafka_bootstrap, "--kafka-user", user,
             "--kafka-password-file", str(users / f"{user}.password"),
             "--kafka-ca", str(secure.tls_dir / "ca.pem")],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        status = subprocess.run(
            [edge, "status", "--outbox", str(tmp_path / f"{device}.sqlite")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(status.stdout)

    device = f"secedge-{uuid.uuid4().hex[:6]}"
    assert run(device, "edge")["pending"] == 0
    forwarded = [
        m
        for m in asyncio.run(topic_messages(secure, secure.topics.beats))
        if json.loads(m.value).get("device") == device
    ]
    assert len(forwarded) > 50
    # a bedside device's credentials may not publish results: they wait in the outbox
    assert run(f"secedge-{uuid.uuid4().hex[:6]}", "device")["pending"] > 50


# -- the pipeline and the API through all of it -----------------------------------------------


@pytest.fixture(scope="module")
def secure_pipeline(secure: Settings) -> Iterator[Settings]:
    from actors.pipeline import stream_down, stream_up

    stream_up(secure, consumers=2, replicas=1)
    try:
        yield secure
    finally:
        stream_down(secure)


async def test_the_pipeline_end_to_end_over_tls_with_acls(
    secure_pipeline: Settings, mitdb_dir: Path
) -> None:
    settings = secure_pipeline
    prefix = f"sec{uuid.uuid4().hex[:6]}"
    expected = offline_reference(mitdb_dir, 3, 60, prefix)
    assert len(expected.beats) > 150
    await replay(settings, mitdb_dir, RECORDS, 3, speed=0, duration_s=60, prefix=prefix)
    stored = await wait_for_beats(settings, prefix, len(expected.beats))
    assert stored == expected.beats  # same beats, same classes, each once
    in_kafka = kafka_beats(await topic_messages(settings, settings.topics.beats), prefix)
    # each once: the pipeline's transactions work under the ACLs too
    assert in_kafka == {
        f"{d}:{REPLAY_SESSION}:{s}": [label] for (d, s), label in expected.beats.items()
    }


def test_the_api_serves_https_only(secure_pipeline: Settings) -> None:
    import ray

    from actors.pipeline import api_down, api_up
    from ecgstream.io.api_keys import create_key
    from ecgstream.io.db import with_connection

    url = api_up(secure_pipeline, replicas=1)
    try:
        assert url.startswith("https://")
        key = with_connection(secure_pipeline, lambda conn: create_key(conn, "secure-test"))[1]
        trust = ssl.create_default_context(cafile=secure_pipeline.tls_dir / "ca.pem")
        with httpx.Client(base_url=url, verify=trust, timeout=30) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/models").status_code == 401
            for _ in range(30):  # the key cache refreshes every 5 s
                answer = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
                if answer.status_code == 200:
                    break
                time.sleep(0.5)
            assert answer.status_code == 200
        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/healthz", timeout=10)
        with pytest.raises(httpx.ConnectError):  # a server our CA did not sign
            httpx.get(f"{url}/healthz", verify=True, timeout=10)
    finally:
        api_down(secure_pipeline)
        ray.shutdown()


async def test_the_central_station_serves_https_and_reads_over_tls(
    secure_pipeline: Settings, mitdb_dir: Path
) -> None:
    """The station on the secure stack: HTTPS with the stack's CA, Kafka as the read-only
    subscriber over SASL_SSL, PostgreSQL over verified TLS; a login link works once."""
    up = _cli(secure_pipeline, "station", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    url = f"https://127.0.0.1:{SECURE_STATION_PORT}"
    assert url in up.stdout
    try:
        prefix = f"sst{uuid.uuid4().hex[:6]}"
        await replay(secure_pipeline, mitdb_dir, RECORDS, 3, speed=0, duration_s=30, prefix=prefix)
        link = _cli(secure_pipeline, "station", "login-link", "--name", "secure nurse")
        assert link.returncode == 0, link.stdout + link.stderr
        once = link.stdout.strip().splitlines()[-1]
        assert once.startswith(f"{url}/login/once?token=")
        trust = ssl.create_default_context(cafile=secure_pipeline.tls_dir / "ca.pem")
        async with httpx.AsyncClient(verify=trust, timeout=30, follow_redirects=True) as client:
            assert (await client.get(f"{url}/api/ward")).status_code == 401
            opened = await client.get(once)  # follows to the page, with the session cookie
            assert opened.status_code == 200 and "Central station" in opened.text
            assert client.cookies.get("station_session")
            ward: dict = {}
            for _ in range(60):
                ward = (await client.get(f"{url}/api/ward")).json()
                if sum(bed.startswith(prefix) for bed in ward["beds"]) == 3:
                    break
                await asyncio.sleep(1)
            assert sorted(b for b in ward["beds"] if b.startswith(prefix)) == [
                f"{prefix}-{i:04d}" for i in range(3)
            ]
        async with httpx.AsyncClient(verify=trust, timeout=30, follow_redirects=True) as again:
            refused = await again.get(once)  # the link worked once
            assert refused.url.path == "/login" and "refused" in str(refused.url)
        async with httpx.AsyncClient(timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(url.replace("https://", "http://") + "/healthz")
    finally:
        down = _cli(secure_pipeline, "station", "down")
        assert down.returncode == 0, down.stdout + down.stderr


def test_nothing_of_the_secure_stack_listens_beyond_loopback(secure_pipeline: Settings) -> None:
    """Every listening socket of the stack's processes (Kafka, PostgreSQL, Prometheus, Ray and
    its workers, Serve's proxy, the monitor) is bound to 127.0.0.1."""
    import re

    from cluster.state import StatePaths

    state = str(secure_pipeline.state_dir)
    digest = StatePaths(secure_pipeline.state_dir).short_tmp_dir("ray").name.rsplit("-", 1)[1]
    listing = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ours: dict[str, str] = {}
    for line in listing.splitlines():
        fields = line.split()
        for pid in re.findall(r"pid=(\d+)", line):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if state in cmdline or digest in cmdline or f"ECGSTREAM_STATE_DIR={state}" in environ:
                ours[fields[3]] = cmdline.replace("\0", " ")[:80]
    assert len(ours) >= 8, ours  # the stack's servers were found
    loopback = ("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")
    exposed = {a: c for a, c in ours.items() if not a.startswith(loopback)}
    # the one known exception: Ray Serve 2.60 binds each replica's inter-deployment gRPC server
    # to [::]:0 in its own code (replica.py); README "Security" says how to contain it
    serve_grpc = {a: c for a, c in exposed.items() if c.startswith("ray::ServeReplica")}
    assert {a: c for a, c in exposed.items() if a not in serve_grpc} == {}


# -- privacy ----------------------------------------------------------------------------------


async def test_privacy_audit_of_the_demo_workload_finds_no_identifier_or_samples(
    secure_pipeline: Settings, mitdb_dir: Path
) -> None:
    """Run the demo's workload (patients, a faulty sensor, malformed messages), then scan every
    log, metric label, Prometheus series and dead-letter summary for its devices' ids, patient
    refs and raw samples: they may only be in the Kafka topics and the database tables."""
    from io import StringIO

    from rich.console import Console

    import ecgstream.audit as audit
    from actors.pipeline import stream_status
    from cluster.prometheus_server import SCRAPE_INTERVAL_S
    from cluster.state import StatePaths
    from ecgstream.demo.live import DEMO_RECORDS, run_live_demo
    from ecgstream.records import load_record

    settings = secure_pipeline
    duration_s, patients = 60.0, 3
    up = _cli(settings, "station", "up")  # the central station watches the workload too
    assert up.returncode == 0, up.stdout + up.stderr
    prefix, stats, state = await run_live_demo(
        settings,
        Console(file=StringIO()),
        patients=patients,
        duration_s=duration_s,
        speed=20,
        status=lambda: stream_status(settings) or {"consumers": []},
    )
    assert state.beats > 100 and state.dead_letters > 0  # the workload really ran
    await asyncio.sleep(2 * SCRAPE_INTERVAL_S)  # Prometheus has scraped what it produced
    down = _cli(settings, "station", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    station_log = settings.state_dir / "logs" / "station.log"
    assert "Application startup complete" in station_log.read_text()  # it ran, and is scanned

    played = int((duration_s + 5) * 360)
    records = [load_record(mitdb_dir, name).head(played) for name in {*DEMO_RECORDS[:3], "101"}]
    needles = audit.Needles.from_workload(
        stats.devices,
        records=records,
        extra_ids=[f"{prefix}-sensor", "dev-bad"],
        extra_patterns=[rf"\b{prefix}-\w+", r"\bpt-[0-9a-f]{12}\b"],
    )
    dead_letters = await topic_messages(settings, settings.topics.deadletter)
    assert dead_letters
    local = settings.local
    async with httpx.AsyncClient(timeout=30) as client:
        monitor = (await client.get(f"http://127.0.0.1:{SECURE_METRICS_PORT}/metrics")).text
        ray_metrics = (await client.get(f"http://127.0.0.1:{local.ray_metrics_port}/metrics")).text
    report = audit.merge(
        audit.scan_log_roots(
            [settings.state_dir / "logs", StatePaths(settings.state_dir).short_tmp_dir("ray")],
            needles,
        ),
        audit.scan_exposition(monitor, "monitor /metrics", needles),
        audit.scan_exposition(ray_metrics, "ray metrics", needles),
        audit.scan_prometheus(settings.prometheus_url, needles),
        audit.scan_texts(audit.dead_letter_texts(dead_letters, "ecg.deadletter"), needles),
    )
    # control: the same needles do find the ids where they belong, in the beats topic
    beats = [
        m for m in await topic_messages(settings, settings.topics.beats) if prefix in str(m.value)
    ]
    assert not audit.scan_texts({"ecg.beats": beats[0].value.decode()}, needles).ok
    print("privacy audit scanned:", report.scanned)  # shown with pytest -s
    assert report.scanned["files"] > 20 and report.scanned["lines"] > 1000, report.scanned
    assert "ecgstream_" in monitor  # the monitor's series were there to be scanned
    assert report.ok, report.to_json()
