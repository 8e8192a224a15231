"""The `ecgstream` command. Each command builds settings, calls the library, and turns an
`EcgstreamError` into one clear line and a non-zero exit."""

from ecgstream.cli.app import app, main

__all__ = ["app", "main"]
