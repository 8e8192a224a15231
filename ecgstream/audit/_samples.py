"""Raw samples as needles: hashes of every window of the workload's samples, to find any 8
consecutive values printed anywhere (as ADC integers or as millivolts)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_WINDOW = 8  # consecutive workload samples that identify a leak exactly
WINDOW_MAX = 64
_MIN_CHANGES = 3  # a window with fewer sample-to-sample changes (a flat line) identifies nothing
_INTEGER = re.compile(r"[-+]?\d{1,18}")

_SALTS = np.arange(1, WINDOW_MAX + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFT_A = np.uint64(30)
_SHIFT_B = np.uint64(27)


def _window_hashes(values: np.ndarray, width: int) -> np.ndarray:
    """A 64-bit hash of every window of `width` consecutive int64 values (array arithmetic only,
    so the wrap-around is silent)."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    n = len(v) - width + 1
    h = np.zeros(max(n, 0), dtype=np.uint64)
    if n <= 0:
        return h
    for i in range(width):
        x = v[i : i + n] + _SALTS[i]
        x ^= x >> _SHIFT_A
        x *= _MIX1
        x ^= x >> _SHIFT_B
        x *= _MIX2
        h = (h ^ x) * _MIX1 + _SALTS[i]
    return h


def _to_millis(values: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(values, dtype=np.float64) * 1000.0).astype(np.int64)


@dataclass(frozen=True, eq=False)
class SampleWindows:
    """Hashes of every `width` consecutive samples of the workload: as ADC integers and as
    millivolts to 3 decimals. Flat windows (fewer than 3 changes from one sample to the next)
    are left out: a run of equal numbers in a log identifies nothing."""

    width: int = DEFAULT_WINDOW
    int_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    milli_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    @classmethod
    def build(
        cls,
        *,
        adc: Iterable[np.ndarray] = (),
        millivolts: Iterable[np.ndarray] = (),
        width: int = DEFAULT_WINDOW,
    ) -> SampleWindows:
        """`adc`: integer arrays (1-D, or 2-D as leads x samples); `millivolts`: float arrays."""
        if not 2 <= width <= len(_SALTS):
            raise ValueError(f"window width must be 2..{len(_SALTS)}")
        ints = [_keys(row, width) for array in adc for row in _rows(array, integer=True)]
        millis = [
            _keys(_to_millis(row), width)
            for array in millivolts
            for row in _rows(array, integer=False)
        ]
        return cls(width, _sorted(ints), _sorted(millis))

    @classmethod
    def from_records(cls, records: Iterable[Any], width: int = DEFAULT_WINDOW) -> SampleWindows:
        """From `EcgRecord`s (or anything with `digital`, `adc_gain`, `adc_baseline`): the
        ADC values and the millivolts the stream computes from them."""
        from ecgstream.signal.units import adc_to_millivolts

        records = list(records)
        return cls.build(
            adc=[r.digital for r in records],
            millivolts=[adc_to_millivolts(r.digital, r.adc_gain, r.adc_baseline) for r in records],
            width=width,
        )

    def __len__(self) -> int:
        return len(self.int_keys) + len(self.milli_keys)

    def find(self, tokens: Sequence[str]) -> bool:
        """Whether `tokens` (numbers in a row, as printed) hold a window of the workload."""
        if len(tokens) < self.width:
            return False
        if len(self.int_keys):
            for run in _split_runs([_int_value(t) for t in tokens], self.width):
                if _contains(self.int_keys, _window_hashes(np.array(run), self.width)):
                    return True
        if len(self.milli_keys):
            for run in _split_runs([_milli_value(t) for t in tokens], self.width):
                if _contains(self.milli_keys, _window_hashes(np.array(run), self.width)):
                    return True
        return False


def _rows(array: np.ndarray, integer: bool) -> list[np.ndarray]:
    a = np.asarray(array)
    if integer and not np.issubdtype(a.dtype, np.integer):
        raise ValueError("adc arrays must hold integers; pass floats as millivolts")
    return [a] if a.ndim == 1 else list(a.reshape(-1, a.shape[-1]))


def _keys(row: np.ndarray, width: int) -> np.ndarray:
    """The hashes of the row's windows, less the flat ones."""
    row = np.asarray(row, dtype=np.int64)
    if len(row) < width:
        return np.zeros(0, dtype=np.uint64)
    changes = np.concatenate([[0], np.cumsum(row[1:] != row[:-1])])
    per_window = changes[width - 1 :] - changes[: len(row) - width + 1]
    return _window_hashes(row, width)[per_window >= _MIN_CHANGES]


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    # sorted, duplicates kept: numpy's unique hashes and is many times slower on millions
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)


def _contains(sorted_keys: np.ndarray, hashes: np.ndarray) -> bool:
    index = np.searchsorted(sorted_keys, hashes).clip(max=len(sorted_keys) - 1)
    return bool(np.any(sorted_keys[index] == hashes))


def _int_value(token: str) -> int | None:
    return int(token) if _INTEGER.fullmatch(token) else None


def _milli_value(token: str) -> int | None:
    try:
        value = float(token) * 1000.0
    except ValueError:
        return None
    return round(value) if math.isfinite(value) and abs(value) < 1e15 else None


def _split_runs(values: list[int | None], width: int) -> Iterator[list[int]]:
    run: list[int] = []
    for value in [*values, None]:
        if value is None:
            if len(run) >= width:
                yield run
            run = []
        else:
            run.append(value)


def joined(a: SampleWindows, b: SampleWindows) -> SampleWindows:
    if a.width != b.width:
        raise ValueError("sample windows of different widths")
    return SampleWindows(
        a.width,
        _sorted([a.int_keys, b.int_keys]),
        _sorted([a.milli_keys, b.milli_keys]),
    )
