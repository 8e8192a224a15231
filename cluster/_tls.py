"""The secure local stack's certificate authority and certificates (`cluster up --secure`).

One CA per state dir signs a server certificate for each service (Kafka, PostgreSQL, the REST
API; valid for 127.0.0.1 and localhost) and a client certificate for each Kafka principal that
may authenticate with mutual TLS. The certificate's common name is the principal's name: the
broker maps `CN=pipeline` to `User:pipeline`, so SCRAM and mTLS clients share one set of ACLs.

Keys are written 0600 and never leave the state dir. Issuing is idempotent: an existing,
still-valid certificate is kept, so restarts do not invalidate clients that trust the CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ecgstream.settings import write_private_bytes

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest leaf lifetime browsers and most TLS stacks accept
RENEW_BEFORE = dt.timedelta(days=30)
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class CertificatePair:
    cert: Path
    key: Path


class CertificateAuthority:
    """A directory holding `ca.pem`/`ca.key` and the certificates it issued."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert = directory / "ca.pem"
        self._key = directory / "ca.key"

    def ensure(self) -> CertificateAuthority:
        if self.cert.exists() and self._key.exists():
            return self
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecgstream local CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        write_private_bytes(self._key, _key_pem(key))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return self

    def issue(self, name: str, *, server: bool) -> CertificatePair:
        """A certificate with common name `name`; a server certificate also names this host."""
        pair = CertificatePair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        if _still_valid(pair.cert, self.cert):
            return pair
        ca_key = serialization.load_pem_private_key(self._key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # servers also act as clients (the broker talks to its own controller)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [usage, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [usage]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        if server:
            alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
            alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        write_private_bytes(pair.key, _key_pem(key))
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: the one unencrypted PEM key format Kafka's PEM keystore, PostgreSQL and Python read
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _still_valid(cert_path: Path, ca_path: Path) -> bool:
    if not cert_path.exists() or not cert_path.with_suffix(".key").exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False  # the CA was replaced: issue again
    return cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
