"""The fuzz targets: one input in, its rejection reason (or None when accepted) out.

A target raises `FuzzBugError` when the code under test misbehaves on the input: any exception other
than the clear rejection (a `WireFormatError` with a `RejectReason`, a pydantic
`ValidationError`, a 4xx `HTTPException`), an accepted input that breaks what the next step
relies on, or a rejection message longer than a bound (an error must never carry the samples
back). Warnings are ignored, as in production: only what escapes counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ecgstream.errors import RejectReason, WireFormatError

MAX_DETAIL_CHARS = 256  # one rejection message
MAX_ERRORS_JSON_CHARS = 8192  # the whole 422 body listing a JSON segment's errors
MAX_LOC_PART_CHARS = 64  # a body key named in an error's location

# a key the API-key targets accept, so the accepted path is exercised too
KNOWN_KEY_ID = "fuzz0001"
KNOWN_KEY_SECRET = "not-a-real-secret-only-for-fuzzing"
KNOWN_KEY = f"ecgk_{KNOWN_KEY_ID}_{KNOWN_KEY_SECRET}"
_KNOWN_SHA256 = hashlib.sha256(KNOWN_KEY_SECRET.encode()).hexdigest()


class FuzzBugError(AssertionError):
    """The code under test misbehaved on one input (anything but a clear rejection)."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _escaped(exc: BaseException) -> FuzzBugError:
    return FuzzBugError(f"{type(exc).__name__} escaped: {str(exc)[:200]}")


def _bounded(what: str, text: str, limit: int = MAX_DETAIL_CHARS) -> None:
    if not isinstance(text, str):
        raise FuzzBugError(f"{what} is a {type(text).__name__}, not a message")
    if len(text) > limit:
        raise FuzzBugError(f"{what} is {len(text)} characters (limit {limit}): {text[:80]!r}...")


def _reason_key(detail: str) -> str:
    """A free-text rejection as a counter key: numbers blanked, cut short."""
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", detail)[:60]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise FuzzBugError(message)


# -- the wire format -------------------------------------------------------------------------


def check_wire_input(data: bytes, decoder: Callable[[bytes], Any] | None = None) -> str | None:
    """`decode_chunk` on one message: a chunk that re-encodes to itself, or a clear reason."""
    from ecgstream import wire

    decode = decoder or wire.decode_chunk
    try:
        with _quiet():
            chunk = decode(data)
    except WireFormatError as exc:
        _require(isinstance(exc.reason, RejectReason), f"reason {exc.reason!r} is no RejectReason")
        _bounded("wire rejection", exc.detail)
        return exc.reason.value
    except Exception as exc:
        raise _escaped(exc) from exc
    _check_chunk(chunk, decode)
    return None


def _check_chunk(chunk: Any, decode: Callable[[bytes], Any]) -> None:
    from ecgstream import wire

    _require(isinstance(chunk, wire.EcgChunk), f"decoder returned a {type(chunk).__name__}")
    n_leads = len(chunk.lead_names)
    _require(1 <= n_leads <= wire.MAX_LEADS, f"{n_leads} leads accepted")
    _require(
        chunk.samples.dtype == np.int16 and chunk.samples.shape[:1] == (n_leads,),
        f"samples {chunk.samples.dtype} {chunk.samples.shape} for {n_leads} leads",
    )
    _require(chunk.samples.ndim == 2 and chunk.n_samples >= 1, "no samples accepted")
    _require(len(chunk.adc_gain) == len(chunk.adc_baseline) == n_leads, "per-lead lists differ")
    _require(wire.MIN_FS_HZ <= chunk.fs <= wire.MAX_FS_HZ, f"fs {chunk.fs} accepted")
    _require(math.isfinite(chunk.start_time), "non-finite t0 accepted")
    _require(all(math.isfinite(g) and g > 0 for g in chunk.adc_gain), "bad gain accepted")
    _require(chunk.seq >= 0 and chunk.first_sample >= 0, "negative counter accepted")
    try:
        with _quiet():
            again = decode(wire.encode_chunk(chunk))
    except Exception as exc:
        raise FuzzBugError(f"an accepted chunk does not round-trip: {type(exc).__name__}") from exc
    _require(again == chunk, "an accepted chunk decodes differently after re-encoding")


# -- the REST API ----------------------------------------------------------------------------


def check_segment_json(body: bytes) -> str | None:
    """`POST /v1/classify`'s parsing: a segment the route can use, or a bounded list of errors."""
    from pydantic import ValidationError

    from ecgstream import api_schema as schema
    from serve_app.api import validation_errors

    try:
        with _quiet():
            segment = schema.SegmentRequest.model_validate_json(body)
    except ValidationError as exc:
        try:
            errors = validation_errors(exc)
            text = json.dumps(errors)
        except Exception as inner:
            raise _escaped(inner) from inner
        _require(bool(errors), "a rejection that lists no error")
        _bounded("the 422 body", text, MAX_ERRORS_JSON_CHARS)
        for error in errors:
            _bounded("an error message", error["msg"])
            for part in error["loc"]:
                if isinstance(part, str):
                    _bounded("an error location", part, MAX_LOC_PART_CHARS)
        return str(errors[0]["type"])
    except Exception as exc:
        raise _escaped(exc) from exc
    x = np.asarray(segment.samples, dtype=np.float32)  # what the route does next
    _require(x.ndim == 2 and x.shape[0] == len(segment.leads), f"samples of shape {x.shape}")
    _require(1 <= x.shape[0] <= schema.MAX_LEADS, f"{x.shape[0]} leads accepted")
    _require(bool(np.isfinite(x).all()), "non-finite samples accepted")
    _require(bool((np.abs(x) <= schema.MAX_ABS_MV).all()), "samples beyond the mV limit accepted")
    _require(schema.MIN_FS <= segment.fs <= schema.MAX_FS, f"fs {segment.fs} accepted")
    seconds = x.shape[1] / segment.fs
    _require(schema.MIN_SECONDS <= seconds <= schema.MAX_SECONDS, f"{seconds} s accepted")
    return None


def check_wfdb_upload(upload: tuple[bytes, bytes]) -> str | None:
    """`POST /v1/classify/wfdb`'s parsing of the two files: millivolts, or a 4xx that says why."""
    from fastapi import HTTPException

    from ecgstream import api_schema as schema
    from serve_app.api import read_wfdb_upload

    header, signal = upload
    try:
        with _quiet():
            x, fs, leads = read_wfdb_upload(header, signal)
    except HTTPException as exc:
        _require(400 <= exc.status_code < 500, f"HTTP {exc.status_code} for a bad upload")
        _bounded("the upload's rejection", exc.detail)
        return f"{exc.status_code} {_reason_key(exc.detail)}"
    except Exception as exc:
        raise _escaped(exc) from exc
    _require(x.dtype == np.float32 and x.ndim == 2, f"samples {x.dtype} of shape {x.shape}")
    _require(x.shape[0] == len(leads), f"{x.shape[0]} rows for {len(leads)} lead names")
    _require(1 <= x.shape[0] <= schema.MAX_LEADS, f"{x.shape[0]} leads accepted")
    _require(bool(np.isfinite(x).all()), "non-finite millivolts accepted")
    _require(schema.MIN_FS <= fs <= schema.MAX_FS, f"fs {fs} accepted")
    seconds = x.shape[1] / fs
    _require(schema.MIN_SECONDS <= seconds <= schema.MAX_SECONDS, f"{seconds} s accepted")
    return None


def check_bearer(headers: tuple[bytes | None, bytes | None]) -> str | None:
    """The credentials of a request, raw header bytes as a client may send them."""
    from starlette.requests import Request

    from serve_app.api import bearer_token

    authorization, api_key = headers
    raw = [(n, v) for n, v in ((b"authorization", authorization), (b"x-api-key", api_key)) if v]
    request = Request({"type": "http", "method": "GET", "path": "/v1/models", "headers": raw})
    try:
        token = bearer_token(request)
    except Exception as exc:
        raise _escaped(exc) from exc
    _require(isinstance(token, str), f"credentials of type {type(token).__name__}")
    sources = [(v or b"").decode("latin-1") for v in (authorization, api_key)]
    _require(any(token in s for s in sources), "credentials that no header carried")
    return check_api_key(token) if token else "no_credentials"


def check_api_key(presented: str) -> str | None:
    """`parse_key` and the secret comparison: a well-formed key or None, never an exception."""
    from ecgstream.io.api_keys import PREFIX, parse_key, secret_matches

    try:
        parsed = parse_key(presented)
        matched = parsed is not None and secret_matches(parsed[1], _KNOWN_SHA256)
    except Exception as exc:
        raise _escaped(exc) from exc
    if parsed is None:
        return "malformed_key"
    _require(
        isinstance(parsed, tuple) and len(parsed) == 2 and all(parsed),
        f"parsed into {type(parsed).__name__}",
    )
    _require(f"{PREFIX}_{parsed[0]}_{parsed[1]}" == presented, "parsing changed the key")
    if parsed[0] != KNOWN_KEY_ID or not matched:
        return "unknown_key"
    return None


# -- raw fuzzer bytes to each target's input (atheris) ----------------------------------------


def wfdb_from_bytes(data: bytes) -> tuple[bytes, bytes]:
    """Two bytes of header length, the header, then the signal file."""
    n = int.from_bytes(data[:2], "big")
    return data[2 : 2 + n], data[2 + n :]


def wfdb_to_bytes(header: bytes, signal: bytes) -> bytes:
    return len(header).to_bytes(2, "big") + header + signal


def bearer_from_bytes(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The Authorization value, a newline, the X-API-Key value."""
    authorization, newline, api_key = data.partition(b"\n")
    return authorization or None, (api_key or None) if newline else None


def api_key_from_bytes(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- valid inputs: seeds for atheris, and what the strategies mutate --------------------------


def valid_chunk_bytes(n_leads: int = 2, n_samples: int = 360) -> bytes:
    from ecgstream.wire import encode_fields

    return encode_fields(
        device_id="bed-07",
        patient_id="p-000000",
        seq=3,
        first_sample=3 * n_samples,
        start_time=1_764_000_000.25,
        fs=360.0,
        lead_names=[f"L{i}" for i in range(n_leads)],
        adc_gain=[200.0] * n_leads,
        adc_baseline=[1024] * n_leads,
        samples=(np.arange(n_leads * n_samples) % 400 - 200).reshape(n_leads, n_samples),
    )


def valid_segment_body(n_leads: int = 1, fs: float = 100.0, seconds: float = 2.0) -> bytes:
    n = math.ceil(seconds * fs)
    rows = [[round(math.sin(i / 7 + lead), 3) for i in range(n)] for lead in range(n_leads)]
    leads = ["MLII", "V1", "V2", "V5"][:n_leads]
    return json.dumps({"fs": fs, "leads": leads, "samples": rows}).encode()


def valid_wfdb_pair(n_leads: int = 2, n_samples: int = 720) -> tuple[bytes, bytes]:
    lines = [f"rec {n_leads} 360 {n_samples}"]
    lines += [f"rec.dat 16 200 11 1024 0 0 0 L{i}" for i in range(n_leads)]
    signal = (np.arange(n_leads * n_samples) % 500).astype("<i2").tobytes()
    return ("\n".join(lines) + "\n").encode(), signal
