"""WFDB records on disk: reading signals by lead name, and finding the data folder.

Leads are always selected by name, never by position: MIT-BIH record 114 has MLII second and
102/104 have no MLII at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import wfdb

from ecgstream.aami import aami_class
from ecgstream.errors import ConfigurationError
from ecgstream.signal.units import adc_to_millivolts
from ecgstream.stream import PREFERRED_LEADS


@dataclass(frozen=True, eq=False)
class EcgRecord:
    """A whole record as the ADC produced it. `digital` is int16, shape (n_leads, n_samples)."""

    name: str
    fs: float
    lead_names: tuple[str, ...]
    adc_gain: tuple[float, ...]
    adc_baseline: tuple[int, ...]
    digital: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.digital.shape[1])

    def head(self, n_samples: int) -> EcgRecord:
        """The first `n_samples` of the record (a shorter replay, its offline twin)."""
        return replace(self, digital=self.digital[:, :n_samples])

    def lead(self, name: str) -> np.ndarray:
        """One lead in millivolts (float32, exactly as the stream converts a device's chunk)."""
        index = self.lead_names.index(name)
        return adc_to_millivolts(
            self.digital[index : index + 1],
            self.adc_gain[index : index + 1],
            self.adc_baseline[index : index + 1],
        )[0]


def list_records(data_dir: Path) -> list[str]:
    listing = data_dir / "RECORDS"
    if listing.exists():
        return [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return sorted(p.stem for p in data_dir.glob("*.hea"))


def load_record(data_dir: Path, record: str) -> EcgRecord:
    header = data_dir / f"{record}.hea"
    if not header.exists():
        raise ConfigurationError(
            f"record {record} not found in {data_dir} (no {header.name}); "
            "`ecgstream data download` fetches PhysioNet databases"
        )
    raw = wfdb.rdrecord(str(data_dir / record), physical=False)
    digital = np.asarray(raw.d_signal, dtype=np.int64).T
    if digital.min() < -32768 or digital.max() > 32767:
        raise ConfigurationError(f"record {record} has samples outside int16")
    return EcgRecord(
        name=record,
        fs=float(raw.fs),
        lead_names=tuple(raw.sig_name),
        adc_gain=tuple(float(g) for g in raw.adc_gain),
        adc_baseline=tuple(int(b) for b in raw.baseline),
        digital=digital.astype(np.int16),
    )


def choose_lead(available: Sequence[str], preference: Sequence[str] = PREFERRED_LEADS) -> str:
    for name in preference:
        if name in available:
            return name
    raise ConfigurationError(f"none of the leads {list(preference)} is in {list(available)}")


@dataclass(frozen=True, eq=False)
class ReferenceBeats:
    """The beat annotations of a record, mapped to AAMI classes (non-beat symbols dropped)."""

    samples: np.ndarray  # int64, sorted
    labels: np.ndarray  # str, one of N S V F Q

    def __len__(self) -> int:
        return int(self.samples.size)


def load_reference_beats(data_dir: Path, record: str, extension: str = "atr") -> ReferenceBeats:
    annotation = wfdb.rdann(str(data_dir / record), extension)
    pairs = [
        (int(sample), label)
        for sample, symbol in zip(annotation.sample, annotation.symbol, strict=True)
        if (label := aami_class(symbol)) is not None
    ]
    samples = np.array([p[0] for p in pairs], dtype=np.int64)
    labels = np.array([p[1] for p in pairs], dtype="<U1")
    order = np.argsort(samples, kind="stable")
    return ReferenceBeats(samples=samples[order], labels=labels[order])


def load_excluded_intervals(data_dir: Path, record: str, extension: str = "atr") -> np.ndarray:
    """Ventricular flutter/fibrillation episodes ('[' to ']'), which EC57 leaves out of QRS
    detection scoring: there are no beats to find in them. Shape (n, 2), sample bounds."""
    annotation = wfdb.rdann(str(data_dir / record), extension)
    intervals, start = [], None
    for sample, symbol in zip(annotation.sample, annotation.symbol, strict=True):
        if symbol == "[":
            start = int(sample)
        elif symbol == "]" and start is not None:
            intervals.append((start, int(sample)))
            start = None
    if start is not None:
        intervals.append((start, int(annotation.sample[-1])))
    return np.array(intervals, dtype=np.int64).reshape(-1, 2)


def outside_intervals(samples: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Boolean mask of samples that lie in none of the [start, end] intervals."""
    keep = np.ones(samples.size, dtype=bool)
    for start, end in intervals:
        keep &= (samples < start) | (samples > end)
    return keep


def load_rhythm_notes(data_dir: Path, record: str, extension: str = "atr") -> list[tuple[int, str]]:
    """The annotators' rhythm changes: (sample, note) of every `+` annotation, e.g. (VT."""
    annotation = wfdb.rdann(str(data_dir / record), extension)
    notes = [
        (int(sample), (aux or "").strip("\x00").strip())
        for sample, symbol, aux in zip(
            annotation.sample, annotation.symbol, annotation.aux_note, strict=True
        )
        if symbol == "+"
    ]
    return sorted(notes)
