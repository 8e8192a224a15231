"""WFDB records (formats 212 and 16, one signal file) read with numpy alone.

The `wfdb` package pulls pandas, matplotlib and requests, too much for a small device; these two
formats cover MIT-BIH and most bedside exports. The server reads the same files with `wfdb`, and
a test holds the two readers equal on every MIT-BIH record.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgstream.errors import ConfigurationError
from ecgstream.signal.units import adc_to_millivolts

_GAIN = re.compile(r"^(?P<gain>[0-9.eE+-]+)(?:\((?P<baseline>-?\d+)\))?(?:/.*)?$")


@dataclass(frozen=True)
class WfdbRecord:
    """A record's header, with its samples read on demand from the memory-mapped signal file
    (a 24-hour Holter record need not fit in a small device's memory)."""

    fs: float
    lead_names: tuple[str, ...]
    n_samples: int
    fmt: str
    data: Path
    gains: tuple[float, ...]
    baselines: tuple[int, ...]

    @functools.cached_property
    def _raw(self) -> np.memmap:
        """The signal file, mapped once (a live replay reads it chunk by chunk)."""
        return np.memmap(self.data, dtype=np.uint8, mode="r")

    @property
    def n_leads(self) -> int:
        return len(self.lead_names)

    def millivolts(self, begin: int = 0, end: int | None = None) -> np.ndarray:
        """float32 (n_leads, end - begin), converted exactly as the server converts."""
        end = self.n_samples if end is None else min(end, self.n_samples)
        if end <= begin:
            return np.zeros((self.n_leads, 0), np.float32)
        raw = self._raw
        first, last = begin * self.n_leads, end * self.n_leads  # interleaved sample indices
        if self.fmt == "212":
            pair = first // 2  # 3 bytes hold samples 2k and 2k+1
            digital = _format_212(np.asarray(raw[pair * 3 : (last + 1) // 2 * 3]))
            digital = digital[first - pair * 2 : first - pair * 2 + last - first]
        else:
            digital = np.asarray(raw[first * 2 : last * 2]).view("<i2")
        samples = digital.reshape(-1, self.n_leads).T
        return adc_to_millivolts(samples, self.gains, self.baselines)


def open_wfdb(record: Path) -> WfdbRecord:
    """`record` is the path without extension (as wfdb takes it): <record>.hea beside the data."""
    header = record.with_name(record.name + ".hea")
    if not header.exists():
        raise ConfigurationError(f"no WFDB header {header}")
    lines = [
        line.split()
        for line in header.read_text(encoding="ascii", errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    try:
        n_sig = int(lines[0][1])
        fs = float(lines[0][2].split("/")[0]) if len(lines[0]) > 2 else 250.0
        signals = lines[1 : 1 + n_sig]
        files = {s[0] for s in signals}
        formats = {s[1].split("x")[0].split(":")[0] for s in signals}
        gains, baselines = [], []
        for s in signals:
            match = _GAIN.match(s[2]) if len(s) > 2 else None
            gain = float(match["gain"]) if match else 200.0
            adc_zero = int(s[4]) if len(s) > 4 else 0
            baseline = match["baseline"] if match and match["baseline"] is not None else adc_zero
            gains.append(gain if gain != 0 else 200.0)
            baselines.append(int(baseline))
        names = tuple(s[8] if len(s) > 8 else f"lead{i}" for i, s in enumerate(signals))
    except (IndexError, ValueError) as exc:
        raise ConfigurationError(f"{header}: not a WFDB header ({exc})") from None
    if len(signals) != n_sig or len(files) != 1 or len(formats) != 1:
        raise ConfigurationError(f"{header}: one signal file and one format are supported")
    fmt = formats.pop()
    if fmt not in ("212", "16"):
        raise ConfigurationError(f"{header}: format {fmt} (supported: 212, 16)")
    data = header.with_name(files.pop())
    if not data.exists():
        raise ConfigurationError(f"{header}: signal file {data.name} is missing")
    size = data.stat().st_size
    n_values = size * 2 // 3 if fmt == "212" else size // 2
    return WfdbRecord(fs, names, n_values // n_sig, fmt, data, tuple(gains), tuple(baselines))


def _format_212(raw: np.ndarray) -> np.ndarray:
    """Pairs of 12-bit two's-complement samples packed in 3 bytes."""
    triples = raw[: raw.size // 3 * 3].reshape(-1, 3).astype(np.int16)
    first = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
    second = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
    out = np.empty(triples.shape[0] * 2, np.int16)
    out[0::2], out[1::2] = first, second
    return np.where(out > 2047, out - 4096, out)
