"""Shared test configuration: everything under tests/integration is marked `integration`."""

from __future__ import annotations

import os

import pytest

# Ray replaces 127.0.0.1 with the machine's routable address unless told otherwise; keep every
# test's traffic on loopback (the local stack's Ray head is started the same way).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
