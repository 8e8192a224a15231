"""Wire format of one ECG chunk: a few seconds of samples from one device, as sent to `ecg.samples`.

A chunk is a msgpack map (version 2; version 1 is the same map without `session`):

| key            | type     | meaning                                                    |
| -------------- | -------- | ---------------------------------------------------------- |
| `v`            | int      | schema version, 2 (1 still accepted)                       |
| `device`       | str      | device id (the Kafka key; one device -> one partition)     |
| `session`      | str      | boot session id: new each time the device's counters start |
| `patient`      | str      | pseudonymous patient id (never a name or record number)    |
| `seq`          | int >= 0 | chunk counter of this device                               |
| `first_sample` | int >= 0 | index of the chunk's first sample in the device's stream   |
| `t0`           | float    | unix time (s) of the first sample                          |
| `fs`           | float    | sampling rate (Hz), 50..2000                               |
| `leads`        | [str]    | lead names, e.g. ["MLII", "V1"]                            |
| `gain`         | [float]  | ADC units per millivolt, one per lead, > 0                 |
| `baseline`     | [int]    | ADC value of 0 mV, one per lead                            |
| `samples`      | [bin]    | one int16 little-endian byte string per lead, same length  |

Samples travel as raw int16 (what the ADC produced) so a chunk is ~2 bytes per sample per lead.
`first_sample` makes a beat's key (device, session, sample index) independent of how the stream
was cut, which is what lets sinks deduplicate re-deliveries; `session` keeps a rebooted device,
whose counters start again at 0, from colliding with its earlier boot. A version-1 chunk has no
session: its session is derived from the device's time origin (`t0 - first_sample / fs`, whole
seconds), which a reboot changes and a re-delivery does not (`legacy_session`).

`decode_chunk` refuses anything else with a `WireFormatError` whose `reason` is one of
`RejectReason`; that reason is what the dead-letter topic and the counters carry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from ecgstream.errors import RejectReason, WireFormatError
from ecgstream.signal.units import adc_to_millivolts

WIRE_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: ~4 min of one lead at 1 kHz; devices send seconds
MAX_LEADS = 16
MIN_FS_HZ = 50.0
MAX_FS_HZ = 2000.0
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_SAMPLE_DTYPE = np.dtype("<i2")

_FIELDS_V1 = (
    "v",
    "device",
    "patient",
    "seq",
    "first_sample",
    "t0",
    "fs",
    "leads",
    "gain",
    "baseline",
    "samples",
)
_FIELDS = (*_FIELDS_V1, "session")
_FIELDS_OF = {1: _FIELDS_V1, 2: _FIELDS}


@dataclass(frozen=True, slots=True, eq=False)
class EcgChunk:
    """One validated chunk. `samples` is int16 of shape (n_leads, n_samples)."""

    device_id: str
    patient_id: str
    seq: int
    first_sample: int
    start_time: float
    fs: float
    lead_names: tuple[str, ...]
    adc_gain: tuple[float, ...]
    adc_baseline: tuple[int, ...]
    samples: np.ndarray
    session: str = ""
    wire_version: int = WIRE_VERSION  # 1: `session` was derived (see legacy_session)

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def end_sample(self) -> int:
        """Index one past the chunk's last sample."""
        return self.first_sample + self.n_samples

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def lead_index(self, name: str) -> int | None:
        try:
            return self.lead_names.index(name)
        except ValueError:
            return None

    def millivolts(self) -> np.ndarray:
        """Samples in mV as float32, shape (n_leads, n_samples)."""
        return adc_to_millivolts(self.samples, self.adc_gain, self.adc_baseline)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EcgChunk):
            return NotImplemented
        return (
            self.device_id == other.device_id
            and self.patient_id == other.patient_id
            and self.seq == other.seq
            and self.first_sample == other.first_sample
            and self.start_time == other.start_time
            and self.fs == other.fs
            and self.lead_names == other.lead_names
            and self.adc_gain == other.adc_gain
            and self.adc_baseline == other.adc_baseline
            and self.session == other.session
            and self.wire_version == other.wire_version
            and np.array_equal(self.samples, other.samples)
        )

    __hash__ = None  # type: ignore[assignment]


def make_chunk(
    *,
    device_id: str,
    patient_id: str,
    seq: int,
    first_sample: int,
    start_time: float,
    fs: float,
    lead_names: Sequence[str],
    adc_gain: Sequence[float],
    adc_baseline: Sequence[int],
    samples: np.ndarray,
    session: str | None = None,
) -> EcgChunk:
    """Build a chunk and check it with the same rules the decoder applies (version 1 when
    `session` is None)."""
    array = np.asarray(samples)
    if array.ndim != 2:
        raise WireFormatError(RejectReason.WRONG_TYPE, "samples must be 2-D (leads, samples)")
    if array.dtype != np.int16:
        if not np.issubdtype(array.dtype, np.integer):
            raise WireFormatError(RejectReason.WRONG_TYPE, "samples must be integer ADC values")
        if array.size and (array.min() < -32768 or array.max() > 32767):
            raise WireFormatError(RejectReason.INVALID_VALUE, "samples do not fit in int16")
    return decode_chunk(
        encode_fields(
            device_id=device_id,
            patient_id=patient_id,
            seq=seq,
            first_sample=first_sample,
            start_time=start_time,
            fs=fs,
            lead_names=lead_names,
            adc_gain=adc_gain,
            adc_baseline=adc_baseline,
            samples=array.astype(_SAMPLE_DTYPE, copy=False),
            session=session,
        )
    )


def encode_chunk(chunk: EcgChunk) -> bytes:
    return encode_fields(
        device_id=chunk.device_id,
        patient_id=chunk.patient_id,
        seq=chunk.seq,
        first_sample=chunk.first_sample,
        start_time=chunk.start_time,
        fs=chunk.fs,
        lead_names=chunk.lead_names,
        adc_gain=chunk.adc_gain,
        adc_baseline=chunk.adc_baseline,
        samples=chunk.samples,
        session=None if chunk.wire_version == 1 else chunk.session,
    )


def encode_fields(
    *,
    device_id: str,
    patient_id: str,
    seq: int,
    first_sample: int,
    start_time: float,
    fs: float,
    lead_names: Sequence[str],
    adc_gain: Sequence[float],
    adc_baseline: Sequence[int],
    samples: np.ndarray,
    session: str | None = None,
) -> bytes:
    """Encode without validating (the decoder validates); tests use it to build bad messages.
    Version 2 with `session`, version 1 without."""
    rows = np.ascontiguousarray(samples, dtype=_SAMPLE_DTYPE)
    extra = {} if session is None else {"session": session}
    return msgpack.packb(
        {
            "v": 1 if session is None else WIRE_VERSION,
            "device": device_id,
            **extra,
            "patient": patient_id,
            "seq": int(seq),
            "first_sample": int(first_sample),
            "t0": float(start_time),
            "fs": float(fs),
            "leads": list(lead_names),
            "gain": [float(g) for g in adc_gain],
            "baseline": [int(b) for b in adc_baseline],
            "samples": [row.tobytes() for row in rows],
        },
        use_bin_type=True,
    )


def decode_chunk(data: bytes) -> EcgChunk:
    """Decode and validate one message, or raise `WireFormatError` saying exactly why not."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireFormatError(RejectReason.WRONG_TYPE, "message value must be bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireFormatError(
            RejectReason.OVERSIZE, f"message is {len(data)} bytes, limit {MAX_MESSAGE_BYTES}"
        )
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=4096,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_array_len=MAX_LEADS * 4,
            max_map_len=len(_FIELDS) * 2,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise WireFormatError(RejectReason.NOT_MSGPACK, f"not a msgpack document ({exc})") from None
    if not isinstance(raw, dict):
        raise WireFormatError(RejectReason.NOT_A_MAP, "top level must be a map")
    return _validate(raw)


def _validate(raw: Mapping[str, Any]) -> EcgChunk:
    if not all(isinstance(key, str) for key in raw):  # msgpack maps may have bin keys
        raise WireFormatError(RejectReason.WRONG_TYPE, "field names must be strings")
    version = raw.get("v")
    if version is None:
        raise WireFormatError(RejectReason.MISSING_FIELD, "field 'v' (schema version) is missing")
    if not isinstance(version, int) or isinstance(version, bool) or version not in _FIELDS_OF:
        raise WireFormatError(
            RejectReason.UNSUPPORTED_VERSION,
            f"schema version {_shown(version)} is not supported "
            f"(this reader speaks {', '.join(map(str, SUPPORTED_VERSIONS))})",
        )
    fields = _FIELDS_OF[version]
    missing = [name for name in fields if name not in raw]
    if missing:
        raise WireFormatError(RejectReason.MISSING_FIELD, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        shown = ", ".join(_shown(name) for name in unknown[:4])
        more = f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""
        raise WireFormatError(RejectReason.UNKNOWN_FIELD, f"unknown field(s): {shown}{more}")

    device_id = _identifier(raw, "device")
    session = _identifier(raw, "session") if version >= 2 else None
    patient_id = _identifier(raw, "patient")
    seq = _non_negative_int(raw, "seq")
    first_sample = _non_negative_int(raw, "first_sample")
    start_time = _finite_float(raw, "t0")
    fs = _finite_float(raw, "fs")
    if not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise WireFormatError(
            RejectReason.FS_OUT_OF_RANGE, f"fs {fs} Hz is outside {MIN_FS_HZ}..{MAX_FS_HZ} Hz"
        )

    leads = _list(raw, "leads", str)
    gains = [float(g) for g in _list(raw, "gain", int | float)]
    baselines = _list(raw, "baseline", int)
    blobs = _list(raw, "samples", bytes)
    if not 1 <= len(leads) <= MAX_LEADS:
        raise WireFormatError(
            RejectReason.INVALID_VALUE, f"{len(leads)} leads; expected 1..{MAX_LEADS}"
        )
    if len(set(leads)) != len(leads) or not all(ID_PATTERN.fullmatch(n) for n in leads):
        raise WireFormatError(RejectReason.INVALID_VALUE, "lead names must be distinct identifiers")
    counts = {"gain": len(gains), "baseline": len(baselines), "samples": len(blobs)}
    wrong = {name: n for name, n in counts.items() if n != len(leads)}
    if wrong:
        detail = ", ".join(f"{name} has {n}" for name, n in wrong.items())
        raise WireFormatError(
            RejectReason.LENGTH_MISMATCH, f"{len(leads)} leads but {detail} entries"
        )
    if not all(math.isfinite(g) for g in gains):
        raise WireFormatError(RejectReason.NON_FINITE, "gain contains NaN or infinity")
    if not all(g > 0 for g in gains):
        raise WireFormatError(RejectReason.INVALID_VALUE, "gain must be > 0 ADC units per mV")
    if not all(-32768 <= b <= 32767 for b in baselines):
        raise WireFormatError(RejectReason.INVALID_VALUE, "baseline must fit in int16")

    lengths = {len(blob) for blob in blobs}
    if len(lengths) != 1:
        raise WireFormatError(
            RejectReason.LENGTH_MISMATCH, f"leads carry different byte lengths {sorted(lengths)}"
        )
    n_bytes = lengths.pop()
    if n_bytes == 0 or n_bytes % _SAMPLE_DTYPE.itemsize:
        raise WireFormatError(
            RejectReason.LENGTH_MISMATCH,
            f"sample bytes per lead ({n_bytes}) must be a positive multiple of 2 (int16)",
        )
    samples = np.frombuffer(b"".join(blobs), dtype=_SAMPLE_DTYPE).reshape(len(leads), -1)
    return EcgChunk(
        device_id=device_id,
        patient_id=patient_id,
        seq=seq,
        first_sample=first_sample,
        start_time=start_time,
        fs=fs,
        lead_names=tuple(leads),
        adc_gain=tuple(gains),
        adc_baseline=tuple(baselines),
        samples=samples.astype(np.int16, copy=False),
        session=session if session is not None else legacy_session(start_time, first_sample, fs),
        wire_version=version,
    )


def legacy_session(start_time: float, first_sample: int, fs: float) -> str:
    """The session of a version-1 chunk: its device's time origin in whole seconds. Every chunk
    of one boot shares it (to clock jitter: a contiguous chunk continues its session anyway);
    a reboot, whose counters start again, moves it."""
    return f"t{math.floor(start_time - first_sample / fs + 0.5)}"


def _shown(value: object, limit: int = 40) -> str:
    """A value from the message in a rejection, cut short: the reason goes to logs and the
    dead-letter topic, and must never carry the message (its samples) along."""
    text = repr(value[: limit + 1] if isinstance(value, str | bytes) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _identifier(raw: Mapping[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str):
        raise WireFormatError(RejectReason.WRONG_TYPE, f"field '{name}' must be a string")
    if not ID_PATTERN.fullmatch(value):
        raise WireFormatError(
            RejectReason.INVALID_VALUE,
            f"field '{name}' must be 1-64 characters of [A-Za-z0-9._:-]",
        )
    return value


def _non_negative_int(raw: Mapping[str, Any], name: str) -> int:
    value = raw[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireFormatError(RejectReason.WRONG_TYPE, f"field '{name}' must be an integer")
    if value < 0:
        raise WireFormatError(RejectReason.INVALID_VALUE, f"field '{name}' must be >= 0")
    return value


def _finite_float(raw: Mapping[str, Any], name: str) -> float:
    value = raw[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise WireFormatError(RejectReason.WRONG_TYPE, f"field '{name}' must be a number")
    if not math.isfinite(value):
        raise WireFormatError(RejectReason.NON_FINITE, f"field '{name}' is NaN or infinite")
    return float(value)


def _list(raw: Mapping[str, Any], name: str, item_type: Any) -> list[Any]:
    value = raw[name]
    if not isinstance(value, list):
        raise WireFormatError(RejectReason.WRONG_TYPE, f"field '{name}' must be an array")
    for item in value:
        if not isinstance(item, item_type) or isinstance(item, bool):
            raise WireFormatError(
                RejectReason.WRONG_TYPE, f"field '{name}' has an element of the wrong type"
            )
    return value
