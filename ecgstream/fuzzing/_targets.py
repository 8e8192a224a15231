"""The registry of fuzz targets: each check with its hypothesis strategy and its atheris form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from ecgstream.fuzzing import _checks as checks
from ecgstream.fuzzing import _strategies as strategies


@dataclass(frozen=True)
class Target:
    """One fuzz target. `from_bytes` turns raw fuzzer bytes into the check's input (atheris);
    `seeds` are valid inputs in that raw form, so coverage-guided fuzzing starts from them."""

    name: str
    check: Callable[[Any], str | None]
    strategy: Callable[[], st.SearchStrategy[Any]]
    from_bytes: Callable[[bytes], Any] = bytes
    seeds: Callable[[], list[bytes]] = list


def _wire_seeds() -> list[bytes]:
    return [checks.valid_chunk_bytes(1, 8), checks.valid_chunk_bytes(3, 40)]


def _segment_seeds() -> list[bytes]:
    return [checks.valid_segment_body(1, 50.0), checks.valid_segment_body(2, 100.0)]


def _wfdb_seeds() -> list[bytes]:
    return [checks.wfdb_to_bytes(*checks.valid_wfdb_pair(n, 720)) for n in (1, 2)]


def _bearer_seeds() -> list[bytes]:
    key = checks.KNOWN_KEY.encode()
    return [b"Bearer " + key + b"\n", b"\n" + key, b"Basic abc\n"]


def _api_key_seeds() -> list[bytes]:
    return [checks.KNOWN_KEY.encode(), b"ecgk_a_b"]


def default_targets() -> dict[str, Target]:
    """Every target, by name (the names the summary and `--target`-less CLI use)."""
    targets = [
        Target("wire", checks.check_wire_input, strategies.wire_inputs, bytes, _wire_seeds),
        Target(
            "segment_json",
            checks.check_segment_json,
            strategies.segment_bodies,
            bytes,
            _segment_seeds,
        ),
        Target(
            "wfdb_upload",
            checks.check_wfdb_upload,
            strategies.wfdb_uploads,
            checks.wfdb_from_bytes,
            _wfdb_seeds,
        ),
        Target(
            "bearer",
            checks.check_bearer,
            strategies.bearer_headers,
            checks.bearer_from_bytes,
            _bearer_seeds,
        ),
        Target(
            "api_key",
            checks.check_api_key,
            strategies.api_keys,
            checks.api_key_from_bytes,
            _api_key_seeds,
        ),
    ]
    return {target.name: target for target in targets}
