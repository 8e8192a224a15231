"""Which device sent a chunk: per-device keys derived from one fleet secret, one signature per
message (decision 82).

Every bedside device publishes through the same Kafka principal (`device`), so the broker
cannot tell one device from another. Each device instead holds its own key,

    K_d = HMAC-SHA256(fleet secret, "ecgstream-device-key:v1:" + device id)

handed to it once at provisioning (`ecgstream devices key`), and sends every chunk with the
Kafka header `ecgstream-sig` = HMAC-SHA256(K_d, message value). A consumer holds the fleet
secret, derives K_d for the device the chunk *names* and compares in constant time. A device
that names another device's id cannot make that device's signature without its key: the chunk
is dead-lettered (`bad_signature`); one with no signature is `unsigned`.

Symmetric keys keep verification at ~2 µs a chunk and need no per-device registry: the cost is
that the consumers (and the provisioning tool) hold the fleet secret, as they hold the database
password. Pure: no I/O, only `hmac`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

from ecgstream.errors import RejectReason, WireFormatError

SIGNATURE_HEADER = "ecgstream-sig"
_KEY_CONTEXT = b"ecgstream-device-key:v1:"
_KEY_CACHE = 65536  # derived keys kept (one per device seen); a derivation costs ~1 µs


def device_key(fleet_secret: bytes, device_id: str) -> bytes:
    """The key provisioned into device `device_id`."""
    return hmac.new(fleet_secret, _KEY_CONTEXT + device_id.encode(), hashlib.sha256).digest()


def sign(key: bytes, value: bytes) -> bytes:
    """What a device puts in the `ecgstream-sig` header of the message `value`."""
    return hmac.new(key, value, hashlib.sha256).digest()


def signature_of(headers: object) -> bytes | None:
    """The `ecgstream-sig` header of a Kafka record's headers (a sequence of (key, value))."""
    for key, value in headers or ():  # type: ignore[attr-defined]
        if key == SIGNATURE_HEADER:
            return bytes(value) if value is not None else None
    return None


class _Keys:
    def __init__(self, fleet_secret: bytes) -> None:
        if len(fleet_secret) < 16:
            raise ValueError("the fleet secret must be at least 16 bytes")
        self._secret = fleet_secret
        self._keys: OrderedDict[str, bytes] = OrderedDict()

    def key(self, device_id: str) -> bytes:
        key = self._keys.get(device_id)
        if key is None:
            key = self._keys[device_id] = device_key(self._secret, device_id)
            if len(self._keys) > _KEY_CACHE:
                self._keys.popitem(last=False)
        return key


class DeviceVerifier(_Keys):
    """The consumer's check that a chunk was signed by the device it names."""

    def verify(self, device_id: str, value: bytes, signature: bytes | None) -> None:
        if signature is None:
            raise WireFormatError(
                RejectReason.UNSIGNED,
                f"no '{SIGNATURE_HEADER}' header: every chunk must be signed by its device",
            )
        if not hmac.compare_digest(sign(self.key(device_id), value), signature):
            raise WireFormatError(
                RejectReason.BAD_SIGNATURE,
                "signature is not that of the device the chunk names "
                "(another device's key, or a wrong or stale key)",
            )


class DeviceSigner(_Keys):
    """Signs for any device: the device simulator (`ecgstream replay`) and provisioning only."""

    def headers(self, device_id: str, value: bytes) -> list[tuple[str, bytes]]:
        return [(SIGNATURE_HEADER, sign(self.key(device_id), value))]
