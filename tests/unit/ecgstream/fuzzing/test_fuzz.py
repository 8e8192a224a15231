"""Fuzzing, bounded: every target under hypothesis with a fixed example count (reproducible,
each call under a deadline, so a near-hang fails), the time-boxed runner, and proof that the
harness does fail on a broken decoder."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgstream.errors import RejectReason, WireFormatError
from ecgstream.fuzzing import _checks as checks
from ecgstream.fuzzing import _strategies as strategies
from ecgstream.fuzzing._targets import Target, default_targets
from ecgstream.fuzzing.runner import run_fuzz

DEADLINE_MS = 500


def bounded(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        deadline=DEADLINE_MS,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def _imports_done() -> None:
    """The API targets import ray on their first call: not a call the deadline should time."""
    for target in default_targets().values():
        for raw in target.seeds():
            target.check(target.from_bytes(raw))


_WIRE_REASONS = {reason.value for reason in RejectReason}


@bounded(400)
@given(strategies.wire_inputs())
def test_the_wire_decoder_accepts_or_gives_a_reason(data: bytes) -> None:
    assert checks.check_wire_input(data) in _WIRE_REASONS | {None}


@bounded(100)
@given(strategies.valid_wire_maps())
def test_valid_chunks_are_accepted_and_round_trip(raw: dict[str, Any]) -> None:
    assert checks.check_wire_input(msgpack.packb(raw, use_bin_type=True)) is None


@bounded(250)
@given(strategies.segment_bodies())
def test_segment_bodies_give_a_segment_or_bounded_errors(body: bytes) -> None:
    checks.check_segment_json(body)


@bounded(50)
@given(strategies.valid_segments())
def test_valid_segments_are_accepted(body: dict[str, Any]) -> None:
    assert checks.check_segment_json(json.dumps(body).encode()) is None


@bounded(150)
@given(strategies.wfdb_uploads())
def test_wfdb_uploads_give_millivolts_or_a_4xx(upload: tuple[bytes, bytes]) -> None:
    reason = checks.check_wfdb_upload(upload)
    assert reason is None or reason.startswith("4")


@bounded(300)
@given(strategies.bearer_headers())
def test_credentials_in_any_headers_never_raise(headers: tuple[bytes | None, bytes | None]) -> None:
    checks.check_bearer(headers)


@bounded(300)
@given(strategies.api_keys())
def test_any_presented_key_parses_or_is_malformed(presented: str) -> None:
    assert checks.check_api_key(presented) in {None, "malformed_key", "unknown_key"}


def test_the_known_key_is_accepted_with_either_header() -> None:
    key = checks.KNOWN_KEY.encode()
    assert checks.check_bearer((b"Bearer " + key, None)) is None
    assert checks.check_bearer((None, key)) is None
    assert checks.check_bearer((b"Basic xyz", None)) == "no_credentials"


@pytest.mark.parametrize(
    "decoder",
    [
        pytest.param(lambda data: data[10 ** len(data)], id="index-error"),
        pytest.param(lambda data: None, id="returns-no-chunk"),
        pytest.param(
            lambda data: (_ for _ in ()).throw(
                WireFormatError(RejectReason.NOT_MSGPACK, f"bad: {data!r}" * 100)
            ),
            id="echoes-the-message",
        ),
    ],
)
def test_a_broken_decoder_is_a_bug(decoder: Any) -> None:
    with pytest.raises(checks.FuzzBugError):
        checks.check_wire_input(b"\x93\x01\x02\x03", decoder=decoder)


def test_run_fuzz_covers_every_target_without_failures() -> None:
    summary = run_fuzz(0.05, seed=1, atheris=False)
    assert set(summary["targets"]) == set(default_targets())
    for name, result in summary["targets"].items():
        assert result["examples"] > 0, name
        assert result["failures"] == [], (name, result["failures"])
    assert summary["ok"] and summary["failures"] == 0
    json.dumps(summary)


def _broken(data: bytes) -> Any:
    raise IndexError("a decoder bug")


def test_run_fuzz_reports_a_crashing_decoder_with_its_input() -> None:
    target = Target(
        "broken", functools.partial(checks.check_wire_input, decoder=_broken), st.binary
    )
    summary = run_fuzz(0.001, seed=1, targets={"broken": target}, atheris=False)
    failures = summary["targets"]["broken"]["failures"]
    assert not summary["ok"] and len(failures) == 1
    assert "IndexError escaped: a decoder bug" in failures[0]["error"]
    assert "b''" in failures[0]["example"]  # shrunk to the smallest input


def _slow(data: bytes) -> Any:
    time.sleep(0.05)
    raise WireFormatError(RejectReason.NOT_MSGPACK, "slow")


def test_run_fuzz_reports_a_call_over_the_deadline() -> None:
    target = Target("slow", functools.partial(checks.check_wire_input, decoder=_slow), st.binary)
    summary = run_fuzz(0.001, seed=1, targets={"slow": target}, atheris=False, deadline_ms=10)
    failures = summary["targets"]["slow"]["failures"]
    assert failures and "DeadlineExceeded" in failures[0]["error"]


def test_the_cli_prints_and_writes_the_summary(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ecgstream.cli.app import app

    out = tmp_path / "fuzz.json"
    result = CliRunner().invoke(
        app, ["fuzz", "--minutes", "0.02", "--seed", "3", "--no-atheris", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["ok"] and set(summary["targets"]) == set(default_targets())
    assert all(r["examples"] > 0 for r in summary["targets"].values())
