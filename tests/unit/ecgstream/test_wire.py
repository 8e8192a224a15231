"""The wire format: exact round trips, and a clear reason for every kind of malformed input."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgstream.errors import RejectReason, WireFormatError
from ecgstream.wire import (
    MAX_MESSAGE_BYTES,
    WIRE_VERSION,
    decode_chunk,
    encode_chunk,
    encode_fields,
    make_chunk,
)


def _fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "device_id": "bed-07",
        "patient_id": "p-3f2a9c",
        "seq": 12,
        "first_sample": 12 * 360,
        "start_time": 1_764_000_000.25,
        "fs": 360.0,
        "lead_names": ("MLII", "V1"),
        "adc_gain": (200.0, 200.0),
        "adc_baseline": (1024, 1024),
        "samples": np.arange(720, dtype=np.int16).reshape(2, 360) - 300,
    }
    fields.update(overrides)
    return fields


def _raw(**overrides: object) -> dict[str, object]:
    """The msgpack map of a valid chunk, with some keys replaced (or removed if None)."""
    raw = msgpack.unpackb(encode_fields(**_fields()), raw=False)
    for key, value in overrides.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    return raw


def _reason(raw: object) -> RejectReason:
    with pytest.raises(WireFormatError) as caught:
        decode_chunk(msgpack.packb(raw, use_bin_type=True))
    assert str(caught.value).startswith(caught.value.reason.value)
    return caught.value.reason


def test_round_trip_is_exact() -> None:
    chunk = make_chunk(**_fields())
    decoded = decode_chunk(encode_chunk(chunk))
    assert decoded == chunk
    assert decoded.samples.dtype == np.int16
    assert decoded.samples.shape == (2, 360)
    assert decoded.end_sample == 13 * 360
    assert decoded.lead_index("V1") == 1
    assert decoded.lead_index("V5") is None


def test_version_2_carries_the_boot_session() -> None:
    chunk = make_chunk(**_fields(), session="boot-7f3a")
    raw = msgpack.unpackb(encode_chunk(chunk), raw=False)
    assert raw["v"] == WIRE_VERSION == 2 and raw["session"] == "boot-7f3a"
    decoded = decode_chunk(encode_chunk(chunk))
    assert decoded == chunk and decoded.session == "boot-7f3a" and decoded.wire_version == 2


def test_version_1_is_accepted_with_the_session_of_its_time_origin() -> None:
    """Every chunk of one boot shares the session (t0 - first_sample/fs); a reboot, whose
    counters start again at 0 later on, gets another; a version-1 chunk re-encodes as version 1."""
    first = make_chunk(**_fields(seq=0, first_sample=0, start_time=1_764_000_000.0))
    later = make_chunk(**_fields(seq=12, first_sample=12 * 360, start_time=1_764_000_012.0))
    rebooted = make_chunk(**_fields(seq=0, first_sample=0, start_time=1_764_000_500.0))
    assert first.wire_version == 1 and first.session == later.session == "t1764000000"
    assert rebooted.session == "t1764000500"
    assert msgpack.unpackb(encode_chunk(first), raw=False)["v"] == 1
    assert decode_chunk(encode_chunk(first)) == first


def test_millivolts_use_gain_and_baseline() -> None:
    chunk = make_chunk(**_fields(samples=np.full((2, 4), 1224, dtype=np.int16)))
    np.testing.assert_allclose(chunk.millivolts(), np.ones((2, 4)))


def test_encoding_is_compact() -> None:
    payload = encode_chunk(make_chunk(**_fields()))
    # 2 leads x 360 samples x 2 bytes, plus a small header
    assert 1440 < len(payload) < 1440 + 200


@settings(max_examples=200, deadline=None)
@given(
    n_leads=st.integers(1, 4),
    n_samples=st.integers(1, 2000),
    fs=st.floats(50, 2000),
    seq=st.integers(0, 2**40),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(n_leads: int, n_samples: int, fs: float, seq: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    samples = rng.integers(-32768, 32767, size=(n_leads, n_samples), dtype=np.int16)
    chunk = make_chunk(
        **_fields(
            lead_names=tuple(f"L{i}" for i in range(n_leads)),
            adc_gain=tuple(float(g) for g in rng.uniform(1, 1000, n_leads)),
            adc_baseline=tuple(int(b) for b in rng.integers(-100, 100, n_leads)),
            samples=samples,
            fs=fs,
            seq=seq,
        )
    )
    assert decode_chunk(encode_chunk(chunk)) == chunk


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_raw(v=3), RejectReason.UNSUPPORTED_VERSION),
        (_raw(v=[2]), RejectReason.UNSUPPORTED_VERSION),  # unhashable: found by the fuzzer
        (_raw(v=2), RejectReason.MISSING_FIELD),  # version 2 names its session
        ({**_raw(), "session": "boot-1"}, RejectReason.UNKNOWN_FIELD),  # version 1 has none
        ({**_raw(v=2), "session": "boot 1!"}, RejectReason.INVALID_VALUE),
        ({**_raw(v=2), "session": 1}, RejectReason.WRONG_TYPE),
        (_raw(v="1"), RejectReason.UNSUPPORTED_VERSION),
        (_raw(v=None), RejectReason.MISSING_FIELD),
        (_raw(fs=None), RejectReason.MISSING_FIELD),
        (_raw(samples=None), RejectReason.MISSING_FIELD),
        ({**_raw(), "extra": 1}, RejectReason.UNKNOWN_FIELD),
        (_raw(fs=math.nan), RejectReason.NON_FINITE),
        (_raw(t0=math.inf), RejectReason.NON_FINITE),
        (_raw(gain=[200.0, math.nan]), RejectReason.NON_FINITE),
        (_raw(fs=10.0), RejectReason.FS_OUT_OF_RANGE),
        (_raw(fs=48_000.0), RejectReason.FS_OUT_OF_RANGE),
        (_raw(gain=[200.0]), RejectReason.LENGTH_MISMATCH),
        (_raw(baseline=[0, 0, 0]), RejectReason.LENGTH_MISMATCH),
        (_raw(samples=[b"\x00\x00" * 360]), RejectReason.LENGTH_MISMATCH),
        (_raw(samples=[b"\x00\x00" * 360, b"\x00\x00" * 359]), RejectReason.LENGTH_MISMATCH),
        (_raw(samples=[b"\x00" * 3, b"\x00" * 3]), RejectReason.LENGTH_MISMATCH),
        (_raw(samples=[b"", b""]), RejectReason.LENGTH_MISMATCH),
        (_raw(fs="360"), RejectReason.WRONG_TYPE),
        (_raw(seq=1.5), RejectReason.WRONG_TYPE),
        (_raw(seq=True), RejectReason.WRONG_TYPE),
        (_raw(device=7), RejectReason.WRONG_TYPE),
        (_raw(leads="MLII"), RejectReason.WRONG_TYPE),
        (_raw(samples=["text", "text"]), RejectReason.WRONG_TYPE),
        (_raw(seq=-1), RejectReason.INVALID_VALUE),
        (_raw(device=""), RejectReason.INVALID_VALUE),
        (_raw(device="bed 07; DROP TABLE"), RejectReason.INVALID_VALUE),
        (_raw(gain=[200.0, 0.0]), RejectReason.INVALID_VALUE),
        (_raw(leads=["MLII", "MLII"]), RejectReason.INVALID_VALUE),
        (_raw(leads=[], gain=[], baseline=[], samples=[]), RejectReason.INVALID_VALUE),
        (_raw(baseline=[1024, 70_000]), RejectReason.INVALID_VALUE),
        ([1, 2, 3], RejectReason.NOT_A_MAP),
    ],
    ids=lambda value: value.value if isinstance(value, RejectReason) else "",
)
def test_malformed_inputs_have_a_reason(raw: object, reason: RejectReason) -> None:
    assert _reason(raw) is reason


def test_not_msgpack() -> None:
    for payload in (b"", b"\xc1", b"{json: true}"[:1] + b"\xff\xff", b"\x92\x01"):
        with pytest.raises(WireFormatError) as caught:
            decode_chunk(payload)
        assert caught.value.reason is RejectReason.NOT_MSGPACK


def test_trailing_bytes_are_rejected() -> None:
    payload = encode_chunk(make_chunk(**_fields())) + b"\x00"
    with pytest.raises(WireFormatError) as caught:
        decode_chunk(payload)
    assert caught.value.reason is RejectReason.NOT_MSGPACK


def test_oversize_is_rejected_before_parsing() -> None:
    with pytest.raises(WireFormatError) as caught:
        decode_chunk(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.reason is RejectReason.OVERSIZE


def test_non_bytes_value_is_rejected() -> None:
    with pytest.raises(WireFormatError) as caught:
        decode_chunk(None)  # type: ignore[arg-type]
    assert caught.value.reason is RejectReason.WRONG_TYPE


def test_make_chunk_refuses_values_outside_int16() -> None:
    with pytest.raises(WireFormatError) as caught:
        make_chunk(**_fields(samples=np.full((2, 4), 40_000, dtype=np.int32)))
    assert caught.value.reason is RejectReason.INVALID_VALUE


def test_errors_pickle_across_actor_boundaries() -> None:
    import pickle

    error = WireFormatError(RejectReason.OVERSIZE, "too big")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.reason is RejectReason.OVERSIZE
    assert str(copy) == str(error)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_decoder(payload: bytes) -> None:
    try:
        decode_chunk(payload)
    except WireFormatError as exc:
        assert isinstance(exc.reason, RejectReason)


@pytest.mark.parametrize(
    "extra",
    [{b"extra": 1}, {b"extra": 1, "other": 2}],
    ids=["bin-key", "bin-and-str-keys"],
)
def test_bin_field_names_are_a_wrong_type_not_a_crash(extra: dict[object, object]) -> None:
    # found by `ecgstream fuzz`: sorting/joining bytes keys with str keys raised TypeError
    assert _reason({**_raw(), **extra}) is RejectReason.WRONG_TYPE


@pytest.mark.parametrize(
    "raw",
    [
        _raw(v=b"\x01\x00" * 100_000),
        _raw(v="1" * 4096),
        {**_raw(), **{f"k{i}" + "x" * 4000: 1 for i in range(10)}},
    ],
    ids=["bin-version", "long-version", "long-unknown-fields"],
)
def test_a_rejection_does_not_echo_the_message(raw: dict[str, object]) -> None:
    # found by `ecgstream fuzz`: the version and unknown field names were echoed whole
    with pytest.raises(WireFormatError) as caught:
        decode_chunk(msgpack.packb(raw, use_bin_type=True))
    assert len(caught.value.detail) <= 256
