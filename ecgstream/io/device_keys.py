"""The fleet secret from the deployment's settings, as the consumer's verifier and the device
simulator's signer (ecgstream/identity.py says how the keys work)."""

from __future__ import annotations

from ecgstream.errors import ConfigurationError
from ecgstream.identity import DeviceSigner, DeviceVerifier
from ecgstream.settings import Settings


def device_verifier(settings: Settings) -> DeviceVerifier | None:
    """The check every consumer applies, or None where `identity.require_signatures` is off.
    Refuses to start without a fleet secret rather than accept unsigned chunks silently."""
    if not settings.identity.require_signatures:
        return None
    secret = settings.fleet_secret()
    if secret is None:
        raise ConfigurationError(
            "identity.require_signatures is on but there is no fleet secret: set "
            f"ECGSTREAM_IDENTITY__FLEET_SECRET, or run `ecgstream cluster up` (which writes "
            f"{settings.fleet_secret_file}), or set ECGSTREAM_IDENTITY__REQUIRE_SIGNATURES=false"
        )
    return DeviceVerifier(secret)


def device_signer(settings: Settings) -> DeviceSigner | None:
    """A signer for simulated devices where this deployment's fleet secret is at hand."""
    secret = settings.fleet_secret()
    return DeviceSigner(secret) if secret is not None else None
