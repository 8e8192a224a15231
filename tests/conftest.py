"""Shared test configuration: everything under tests/integration is marked `integration`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray replaces 127.0.0.1 with the machine's routable address unless told otherwise; keep every
# test's traffic on loopback (the local stack's Ray head is started the same way).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mitdb_dir() -> Path:
    """The real MIT-BIH records (../shared/data/mitdb beside the checkout, or the configured
    data dir). Tests that need them fail loudly when they are missing: no silent skips."""
    from ecgstream.settings import Settings

    path = Settings().records_dir
    assert (path / "101.hea").exists(), (
        f"MIT-BIH records not found in {path}: set ECGSTREAM_DATA_DIR or run "
        "`ecgstream data download`"
    )
    return path


_EXIT_STATUS: dict[str, int] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without the interpreter's teardown once pytest is done.

    After a session that used Ray drivers and torch in this process, native threads (gRPC, the
    Ray core worker) occasionally crash the interpreter's final cleanup with a segmentation
    fault, after every test has passed and the summary is printed; that turned a green run red
    once in CI. The results are final here, so exit with pytest's own status.
    """
    import sys

    if "status" in _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["status"])


@pytest.fixture(scope="session")
def nstdb(mitdb_dir: Path) -> Path:
    path = mitdb_dir.parent / "nstdb"
    assert (path / "118e06.hea").exists(), f"nstdb records not found in {path}"
    return path


def record_chunks(
    mitdb_dir: Path,
    name: str,
    seconds: int,
    *,
    session: str | None = None,
    start_time: float = 1000.0,
    device_id: str = "bed-1",
) -> list[bytes]:
    """The first `seconds` of a real record as encoded 1-s chunks of device "bed-1" (wire
    version 1 without `session`)."""
    from ecgstream.records import load_record
    from ecgstream.wire import encode_chunk, make_chunk

    record = load_record(mitdb_dir, name)
    return [
        encode_chunk(
            make_chunk(
                device_id=device_id,
                patient_id="pt-1",
                seq=i,
                first_sample=i * 360,
                start_time=start_time + i,
                fs=record.fs,
                lead_names=record.lead_names,
                adc_gain=record.adc_gain,
                adc_baseline=record.adc_baseline,
                samples=record.digital[:, i * 360 : (i + 1) * 360],
                session=session,
            )
        )
        for i in range(seconds)
    ]
