"""The `ecgstream` command. Each command builds settings, calls the library, and turns an
`EcgstreamError` into one clear line and a non-zero exit."""

import os

# Ray decides at import time whether 127.0.0.1 may be used as a node address; the local stack's
# head runs on loopback, so a CLI process must say so before anything imports ray. A configured
# remote cluster (ECGSTREAM_RAY__ADDRESS) is reached at its own address either way.
if not os.environ.get("ECGSTREAM_RAY__ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from ecgstream.cli.app import app, main

__all__ = ["app", "main"]
