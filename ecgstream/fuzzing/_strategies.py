"""Hypothesis strategies for the fuzz targets: random bytes, well-formed documents of the wrong
shape, and valid inputs with a few fields broken (where the interesting code paths are)."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import numpy as np
from hypothesis import strategies as st

from ecgstream.fuzzing import _checks as checks

_WIRE_FIELDS = ("v", "device", "patient", "seq", "first_sample", "t0", "fs")
_WIRE_LISTS = ("leads", "gain", "baseline", "samples")
_SPECIAL_NUMBERS = (math.nan, math.inf, -math.inf, -1, 0, 2**64 - 1, -(2**63), 1.5, 1e308, 5e-324)


def _mutate_bytes(data: bytes, draw: st.DrawFn) -> bytes:
    """Nothing, a truncation, a flipped byte or trailing junk."""
    how = draw(st.sampled_from(["keep", "keep", "truncate", "flip", "append"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=8))
    return data


# -- msgpack -----------------------------------------------------------------------------------

_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", fullmatch=True)
_msgpack_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.sampled_from(_SPECIAL_NUMBERS),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999)),
)
_msgpack_keys = st.one_of(st.text(max_size=12), st.binary(max_size=6), st.integers(-3, 3))
msgpack_values = st.recursive(
    _msgpack_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(_msgpack_keys, inner, max_size=5)
    ),
    max_leaves=12,
)


@st.composite
def valid_wire_maps(draw: st.DrawFn) -> dict[str, Any]:
    """The msgpack map of a valid chunk."""
    n_leads = draw(st.integers(1, 4))
    n_samples = draw(st.integers(1, 64))
    return {
        "v": 1,
        "device": draw(_ids),
        "patient": draw(_ids),
        "seq": draw(st.integers(0, 2**64 - 1)),
        "first_sample": draw(st.integers(0, 2**64 - 1)),
        "t0": draw(st.floats(allow_nan=False, allow_infinity=False)),
        "fs": draw(st.floats(50, 2000)),
        "leads": draw(st.lists(_ids, min_size=n_leads, max_size=n_leads, unique=True)),
        "gain": draw(st.lists(st.floats(1e-3, 1e6), min_size=n_leads, max_size=n_leads)),
        "baseline": draw(st.lists(st.integers(-32768, 32767), min_size=n_leads, max_size=n_leads)),
        "samples": [
            draw(st.binary(min_size=2 * n_samples, max_size=2 * n_samples)) for _ in range(n_leads)
        ],
    }


@st.composite
def broken_wire_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """A valid chunk's map with one to three fields broken."""
    raw: dict[Any, Any] = draw(valid_wire_maps())
    fields = (*_WIRE_FIELDS, *_WIRE_LISTS)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(
            st.sampled_from(
                ["replace", "special", "delete", "extra", "length", "bytes", "oversize", "text"]
            )
        )
        key = draw(st.sampled_from(fields))
        if how == "replace":
            raw[key] = draw(msgpack_values)
        elif how == "special":
            raw[key] = draw(st.sampled_from((*_SPECIAL_NUMBERS, True, "", b"", [], {}, "x" * 5000)))
        elif how == "delete":
            raw.pop(key, None)
        elif how == "extra":
            raw[draw(st.one_of(st.text(max_size=200), st.binary(max_size=8)))] = draw(
                msgpack_values
            )
        elif how == "length" and isinstance(
            raw.get(lst := draw(st.sampled_from(_WIRE_LISTS))), list
        ):
            items = raw[lst]
            raw[lst] = items[:-1] if items and draw(st.booleans()) else [*items, *items[:1]]
        elif how == "bytes" and isinstance(raw.get("samples"), list) and raw["samples"]:
            blobs = list(raw["samples"])
            i = draw(st.integers(0, len(blobs) - 1))
            if isinstance(blobs[i], bytes):
                blobs[i] = blobs[i][: draw(st.integers(0, len(blobs[i])))] + draw(
                    st.binary(max_size=3)
                )
            raw["samples"] = blobs
        elif how == "oversize":
            lst = draw(st.sampled_from(_WIRE_LISTS))
            item = raw[lst][0] if isinstance(raw.get(lst), list) and raw[lst] else 0
            raw[lst] = [item] * draw(st.integers(17, 70))
        elif how == "text":
            value = draw(st.text(min_size=1, max_size=70))
            if key == "leads" and isinstance(raw.get("leads"), list) and raw["leads"]:
                raw["leads"] = [value, *raw["leads"][1:]]
            else:
                raw[draw(st.sampled_from(["device", "patient"]))] = value
    return raw


@st.composite
def _packed(draw: st.DrawFn, maps: st.SearchStrategy[Any]) -> bytes:
    data = msgpack.packb(draw(maps), use_bin_type=draw(st.booleans()))
    return _mutate_bytes(data, draw)


def _near_limit(n_bytes: int) -> bytes:
    """One valid lead of ~n_bytes, or a message of exactly n_bytes of zeros when odd."""
    if n_bytes % 2:
        return b"\x00" * n_bytes
    return checks.valid_chunk_bytes(n_leads=1, n_samples=n_bytes // 2 - 64)


def wire_inputs() -> st.SearchStrategy[bytes]:
    """What may arrive on `ecg.samples`."""
    from ecgstream.wire import MAX_MESSAGE_BYTES

    return st.one_of(
        st.binary(max_size=512),
        _packed(msgpack_values),
        valid_wire_maps().map(lambda raw: msgpack.packb(raw, use_bin_type=True)),
        _packed(broken_wire_maps()),
        _packed(broken_wire_maps()),
        st.integers(MAX_MESSAGE_BYTES - 8, MAX_MESSAGE_BYTES + 8).map(_near_limit),
    )


# -- JSON segments -----------------------------------------------------------------------------

_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    _json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)
_NUMBER_TOKENS = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 400, "0.0", "-0")


@st.composite
def valid_segments(draw: st.DrawFn) -> dict[str, Any]:
    n_leads = draw(st.integers(1, 3))
    fs = draw(st.floats(50, 200))
    n = math.ceil(2 * fs) + draw(st.integers(0, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {
        "fs": fs,
        "leads": ["MLII", "V1", "V5"][:n_leads],
        "samples": rng.uniform(-5, 5, (n_leads, n)).round(3).tolist(),
    }


@st.composite
def segment_bodies(draw: st.DrawFn) -> bytes:
    """What may arrive as the body of `POST /v1/classify`."""
    kind = draw(st.sampled_from(["bytes", "json", "valid", "broken", "broken", "token"]))
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body: dict[str, Any] = draw(valid_segments())
    if kind == "broken":
        for _ in range(draw(st.integers(1, 3))):
            how = draw(st.sampled_from(["replace", "delete", "extra", "row", "many", "lead"]))
            key = draw(st.sampled_from(["fs", "leads", "samples"]))
            if how == "replace":
                body[key] = draw(json_values)
            elif how == "delete":
                body.pop(key, None)
            elif how == "extra":
                body[draw(st.text(min_size=1, max_size=500))] = draw(json_values)
            elif how == "row" and isinstance(body.get("samples"), list) and body["samples"]:
                rows = body["samples"]
                row = rows[0][: draw(st.integers(0, 50))] if isinstance(rows[0], list) else []
                body["samples"] = [row, *rows[1:]] if draw(st.booleans()) else [*rows, row]
            elif how == "many":  # one error per element: the 422 body must stay bounded
                body["samples"] = [["x"] * draw(st.integers(50, 3000))]
            elif how == "lead":
                body["leads"] = draw(st.lists(st.text(max_size=20), max_size=14))
    text = json.dumps(body)
    if kind == "token":  # JSON number tokens python's json would not write
        text = text.replace("0.", draw(st.sampled_from(_NUMBER_TOKENS)) + ",0.", 1)
    return _mutate_bytes(text.encode(), draw)


# -- WFDB uploads ------------------------------------------------------------------------------

# replacement tokens per field of a signal line: file fmt gain adcres adczero initval checksum
# blocksize description
_FMT_TOKENS: tuple[str, ...] = (
    "212",
    "80",
    "8",
    "310",
    "311",
    "24",
    "32",
    "61",
    "160",
    "508",
    "16x2",
    "16:3",
)
_FMT_TOKENS += ("16+9999", "0", "999", "abc", "", "16+99999999999", "16x99999", "16:-1")
_LINE_TOKENS = (
    ("other.dat", "f.dat", "rec.hea", "..", "~", "a/b.dat", "", "rec.dat rec.dat"),
    _FMT_TOKENS,
    ("0", "-200", "1e-300", "1e400", "nan", "inf", "200(1024)/mV", "200/uV", "abc", "", "1e-30"),
    ("0", "-1", "99", "x"),
    ("-99999", "99999999999", "x"),
    ("70000", "-1", "x"),
    ("1", "-70000", "x"),
    ("1", "-1", "99999999", "x"),
    ("", "é", "x" * 300, "a b c"),
)
_RECORD_TOKENS = {  # record line: name n_sig fs n_samples
    0: ("", "r" * 80, "r" * 300, "../x", "/abs", "a/b", ".hidden", "-", "100/2", "é"),
    1: ("0", "-1", "13", "99", "x", "2/3", "1e3"),
    2: ("0", "-5", "nan", "inf", "1e400", "360/2", "250:1", "abc", "49.9", "1000.1", "1e-9"),
    3: ("0", "1", "-720", "1000000000", "3600001", "1" * 30, "x", ""),
}


@st.composite
def wfdb_headers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A valid record with one to three fields of its header (or its signal file) broken."""
    n_sig = draw(st.integers(1, 3))
    n_samples = draw(st.integers(720, 1500))
    record = ["rec", str(n_sig), "360", str(n_samples)]
    lines = [["rec.dat", "16", "200", "11", "1024", "0", "0", "0", f"L{i}"] for i in range(n_sig)]
    n_bytes = 2 * n_sig * n_samples
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["record", "line", "line", "shorten", "count", "signal"]))
        if how == "record":
            field = draw(st.integers(0, 3))
            record[field] = draw(st.sampled_from(_RECORD_TOKENS[field]))
        elif how == "line" and lines:
            line, field = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, 8))
            row, token = lines[line], draw(st.sampled_from(_LINE_TOKENS[field]))
            row[min(field, len(row) - 1)] = token
        elif how == "shorten" and lines:
            line = draw(st.integers(0, len(lines) - 1))
            lines[line] = lines[line][: draw(st.integers(1, 8))]
        elif how == "count":
            lines = lines[:-1] if draw(st.booleans()) else [*lines, lines[0] if lines else ["x"]]
        elif how == "signal":
            n_bytes = draw(st.one_of(st.integers(0, 9), st.integers(n_bytes - 3, n_bytes + 3)))
    if draw(st.integers(0, 4)) == 0:
        lines.append(["#", draw(st.text(st.characters(min_codepoint=32, max_codepoint=126)))])
    text = " ".join(record) + "\n" + "".join(" ".join(line) + "\n" for line in lines)
    signal = (np.arange(max(n_bytes, 0) // 2 + 1) % 700).astype("<i2").tobytes()[: max(n_bytes, 0)]
    return text.encode("utf-8"), signal


def wfdb_uploads() -> st.SearchStrategy[tuple[bytes, bytes]]:
    """What may arrive as the two files of `POST /v1/classify/wfdb`."""
    valid = st.tuples(st.integers(1, 3), st.integers(720, 2000)).map(
        lambda a: checks.valid_wfdb_pair(*a)
    )
    return st.one_of(
        st.tuples(st.binary(max_size=300), st.binary(max_size=300)),
        valid,
        wfdb_headers(),
        wfdb_headers(),
    )


# -- credentials -------------------------------------------------------------------------------

_schemes = st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b"", b"Bearer\t", b"Token"])
_separators = st.sampled_from([b" ", b"  ", b"\t", b"", b" \t "])


def _key_like() -> st.SearchStrategy[str]:
    part = st.text(max_size=12)
    return st.one_of(
        st.just(checks.KNOWN_KEY),
        st.lists(part, min_size=1, max_size=5).map("_".join),
        st.tuples(part, part).map(lambda p: f"ecgk_{p[0]}_{p[1]}"),
        st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", "\n"])).map(
            lambda w: f"{w[0]}{checks.KNOWN_KEY}{w[1]}"
        ),
        st.text(max_size=100),
    )


def api_keys() -> st.SearchStrategy[str]:
    """Any string presented as an API key."""
    return _key_like()


def bearer_headers() -> st.SearchStrategy[tuple[bytes | None, bytes | None]]:
    """Authorization and X-API-Key header values as raw bytes (or absent)."""
    key_bytes = _key_like().map(lambda k: k.encode("utf-8"))
    authorization = st.one_of(
        st.none(),
        st.binary(max_size=80),
        st.tuples(_schemes, _separators, key_bytes).map(b"".join),
    )
    return st.tuples(authorization, st.one_of(st.none(), st.binary(max_size=80), key_bytes))
