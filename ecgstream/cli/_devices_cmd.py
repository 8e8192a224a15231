"""`ecgstream devices key`: provision a bedside device with its own signing key (the key signs
every chunk the device sends; ecgstream/identity.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from ecgstream.cli._common import console, reports_errors
from ecgstream.errors import ConfigurationError
from ecgstream.identity import device_key
from ecgstream.settings import load_settings, write_secret_file
from ecgstream.wire import ID_PATTERN

devices_app = typer.Typer(help="Bedside devices: their identity.")


@devices_app.command()
@reports_errors
def key(
    device_id: str = typer.Argument(..., help="the id the device sends as `device`"),
    out: Path = typer.Option(..., "--out", help="file to write the key to (hex, mode 0600)"),
) -> None:
    """Write DEVICE_ID's signing key (derived from the fleet secret) for its provisioning. The
    key is written to a file only, never printed: install it on that device alone."""
    if not ID_PATTERN.fullmatch(device_id):
        raise ConfigurationError("device id must be 1-64 characters of [A-Za-z0-9._:-]")
    settings = load_settings()
    secret = settings.fleet_secret()
    if secret is None:
        raise ConfigurationError(
            "no fleet secret: set ECGSTREAM_IDENTITY__FLEET_SECRET or run `ecgstream cluster up`"
        )
    write_secret_file(out, device_key(secret, device_id).hex())
    console.print(f"wrote the signing key of one device to {out} (mode 0600)")
