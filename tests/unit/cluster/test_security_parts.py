"""Pure parts of the secure mode: certificates, Kafka client options, request budgets."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cluster._tls import CertificateAuthority
from cluster.kafka_security import KafkaSecurity
from ecgstream.errors import ConfigurationError
from ecgstream.io.kafka import security_options
from ecgstream.settings import KafkaSettings, Settings, StationSettings
from serve_app._rate_limit import RateLimiter, retry_after_header


def test_the_ca_issues_verifiable_certificates_once(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "tls").ensure()
    server = ca.issue("broker", server=True)
    client = ca.issue("device", server=False)
    assert oct(server.key.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "tls" / "ca.key").stat().st_mode & 0o777) == "0o600"
    root = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    cert = x509.load_pem_x509_certificate(server.cert.read_bytes())
    cert.verify_directly_issued_by(root)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    usage = x509.load_pem_x509_certificate(client.cert.read_bytes()).extensions
    eku = usage.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Python's own TLS stack accepts the pair and the chain
    context = ssl.create_default_context(cafile=ca.cert)
    context.load_cert_chain(server.cert, server.key)

    before = server.cert.read_bytes()
    assert ca.issue("broker", server=True) == server
    assert server.cert.read_bytes() == before  # still valid: kept, clients keep trusting it
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)


def test_a_replaced_ca_reissues_its_certificates(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path).ensure()
    first = ca.issue("postgres", server=True).cert.read_bytes()
    (tmp_path / "ca.pem").unlink()
    (tmp_path / "ca.key").unlink()
    again = CertificateAuthority(tmp_path).ensure()
    assert again.issue("postgres", server=True).cert.read_bytes() != first


def test_plaintext_unless_configured_or_the_local_stack_is_secure(tmp_path: Path) -> None:
    plain = Settings(state_dir=tmp_path)
    assert security_options(plain) == {"security_protocol": "PLAINTEXT"}

    plain.secure_marker.write_text("secure")
    with pytest.raises(ConfigurationError, match="cluster up --secure"):
        security_options(plain, "device")  # secure but no credentials yet: a clear error
    KafkaSecurity(plain, tmp_path / "kafka").ensure_material()
    options = security_options(plain, "device")
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "device"
    assert options["sasl_plain_password"] == (
        (tmp_path / "kafka" / "users" / "device.password").read_text().strip()
    )
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_configured_security_is_complete_or_refused(tmp_path: Path) -> None:
    def options(**kafka: object) -> dict[str, object]:
        return security_options(Settings(kafka=KafkaSettings(**kafka)))  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match="USERNAME"):
        options(security_protocol="SASL_SSL", username="pipeline")
    with pytest.raises(ConfigurationError, match="CERT_FILE"):
        options(security_protocol="SSL")
    ca = CertificateAuthority(tmp_path).ensure()
    pair = ca.issue("pipeline", server=False)
    pair.key.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        options(security_protocol="SSL", ca_file=ca.cert, cert_file=pair.cert, key_file=pair.key)
    pair.key.chmod(0o600)
    mtls = options(security_protocol="SSL", ca_file=ca.cert, cert_file=pair.cert, key_file=pair.key)
    assert mtls["security_protocol"] == "SSL" and "sasl_mechanism" not in mtls
    scram = options(security_protocol="SASL_SSL", username="p", password="pw", ca_file=ca.cert)
    assert scram["sasl_plain_password"] == "pw"
    # the central station writes its escalations as a second principal, reads as the first
    station = Settings(
        kafka=KafkaSettings(security_protocol="SASL_SSL", username="subscriber", password="r"),  # type: ignore[arg-type]
        station=StationSettings(pager_username="pager", pager_password="w"),  # type: ignore[arg-type]
    )
    pager = security_options(station, "pager")
    assert (pager["sasl_plain_username"], pager["sasl_plain_password"]) == ("pager", "w")
    reader = security_options(station, "subscriber")
    assert (reader["sasl_plain_username"], reader["sasl_plain_password"]) == ("subscriber", "r")
    assert "pager_password" not in station.to_json()  # a secret: never handed on


def test_the_broker_acls_grant_each_principal_only_its_topics(tmp_path: Path) -> None:
    grants = KafkaSecurity(Settings(state_dir=tmp_path), tmp_path).acl_commands()

    def allowed(user: str) -> list[str]:
        return [" ".join(g) for g in grants if g[2] == f"User:{user}"]

    device = allowed("device")
    assert device == [
        "--add --allow-principal User:device --operation Write --operation Describe "
        "--topic ecg.samples"
    ]
    # the central station's principal reads the signal for its strips, and writes nothing
    assert any("--topic ecg.samples " in g + " " for g in allowed("subscriber"))
    assert not any("Write" in g for g in allowed("subscriber"))
    assert allowed("pager") == [
        "--add --allow-principal User:pager --operation Write --operation Describe "
        "--topic ecg.alarms.escalated"
    ]
    assert not any("--topic ecg.samples " in g + " " and "Write" in g for g in allowed("pipeline"))
    assert allowed("admin") == []  # a super user, not a list of grants


def test_a_budget_allows_its_burst_then_paces_requests() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.acquire("k", 60, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("k", 60, 3)
    assert wait == pytest.approx(1.0)  # 60/min: one more each second
    assert limiter.acquire("other", 60, 3) == 0.0  # budgets are per key
    now[0] = 1.0
    assert limiter.acquire("k", 60, 3) == 0.0
    assert limiter.acquire("k", 60, 3) > 0
    assert retry_after_header(0.2) == "1" and retry_after_header(2.1) == "3"


def test_a_replica_enforces_its_share_and_bursts_never_exceed_a_minute() -> None:
    now = [0.0]
    half = RateLimiter(share=0.5, clock=lambda: now[0])
    assert sum(half.acquire("k", 120, 10) == 0.0 for _ in range(10)) == 5
    slow = RateLimiter(clock=lambda: now[0])
    assert sum(slow.acquire("k", 2, 60) == 0.0 for _ in range(10)) == 2
    with pytest.raises(ValueError):
        RateLimiter(share=0)
