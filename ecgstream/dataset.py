"""Labelled beats for training and evaluation, from records through the streaming path.

Training sees exactly what the stream sees: beats found by the streaming detector (not the
reference annotation positions), labelled by the reference beat they match within 150 ms.
Detections with no reference beat, and Q beats, are left out of training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ecgstream.aami import MODEL_CLASSES
from ecgstream.ec57 import match_beats
from ecgstream.records import EcgRecord, load_record, load_reference_beats
from ecgstream.rhythm.ticks import RhythmTick
from ecgstream.stream import DetectedBeat, PatientStream, PreprocessConfig, choose_leads

MATCH_TOLERANCE_S = 0.150


@dataclass(frozen=True, eq=False)
class RecordBeats:
    """Every detected beat of one record, with the reference label where one matches."""

    record: str
    fs: float
    lead: str
    samples: np.ndarray  # int64, device sample index of each detected beat
    windows: np.ndarray  # float32 (n, 2, window)
    rr: np.ndarray  # float32 (n, n_rr)
    labels: np.ndarray  # "<U1": the matched reference class, "" where none matched


@dataclass(frozen=True, eq=False)
class TrainingSet:
    windows: np.ndarray
    rr: np.ndarray
    targets: np.ndarray  # int64 index into MODEL_CLASSES
    records: np.ndarray  # "<U8": record of each beat (for patient-wise checks)

    def __len__(self) -> int:
        return int(self.targets.size)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.targets, minlength=len(MODEL_CLASSES))
        return {name: int(n) for name, n in zip(MODEL_CLASSES, counts, strict=True)}


def detect_beats(
    record: EcgRecord, config: PreprocessConfig, chunk_samples: int | None = None
) -> tuple[str, list[DetectedBeat]]:
    """Run a record's leads through `PatientStream`, whole or in chunks; returns the name of
    the detection lead and the beats."""
    lead, beats, _ = detect_beats_and_ticks(record, config, chunk_samples, rhythm=False)
    return lead, beats


def detect_beats_and_ticks(
    record: EcgRecord,
    config: PreprocessConfig,
    chunk_samples: int | None = None,
    rhythm: bool = True,
) -> tuple[str, list[DetectedBeat], list[RhythmTick]]:
    """`detect_beats`, with the rhythm clock's ticks too (asystole, pause and VF rules)."""
    leads = choose_leads(record.lead_names, config)
    x = np.stack([record.lead(record.lead_names[i]) for i in leads])
    stream = PatientStream(record.fs, config, rhythm=rhythm)
    step = chunk_samples or x.shape[1]
    beats: list[DetectedBeat] = []
    ticks: list[RhythmTick] = []
    for begin in range(0, x.shape[1], step):
        beats += stream.push(x[:, begin : begin + step])
        ticks += stream.pop_ticks()
    beats += stream.flush()
    ticks += stream.pop_ticks()
    return record.lead_names[leads[0]], beats, ticks


def record_beats(data_dir: Path, name: str, config: PreprocessConfig) -> RecordBeats:
    record = load_record(data_dir, name)
    reference = load_reference_beats(data_dir, name)
    lead, beats = detect_beats(record, config)
    samples = np.array([b.device_sample for b in beats], dtype=np.int64)
    labels = np.full(samples.size, "", dtype="<U1")
    match = match_beats(reference.samples, samples, round(MATCH_TOLERANCE_S * record.fs))
    labels[match.det_index] = reference.labels[match.ref_index]
    window = config.beat.window
    return RecordBeats(
        record=name,
        fs=record.fs,
        lead=lead,
        samples=samples,
        windows=(
            np.stack([b.features.window for b in beats])
            if beats
            else np.zeros((0, config.beat.channels, window), np.float32)
        ),
        rr=np.stack([b.features.rr for b in beats])
        if beats
        else np.zeros((0, config.beat.n_features), np.float32),
        labels=labels,
    )


def subsample_beats(beats: RecordBeats, limit: int, seed: int) -> RecordBeats:
    """At most `limit` labelled beats of a record (seeded), for training on a small budget;
    0 keeps every beat."""
    labelled = np.flatnonzero(beats.labels != "")
    if limit <= 0 or labelled.size <= limit:
        return beats
    keep = np.sort(np.random.default_rng(seed).choice(labelled, limit, replace=False))
    return replace(
        beats,
        samples=beats.samples[keep],
        windows=beats.windows[keep],
        rr=beats.rr[keep],
        labels=beats.labels[keep],
    )


def training_set(beats: Iterable[RecordBeats]) -> TrainingSet:
    windows, rr, targets, records = [], [], [], []
    index = {name: i for i, name in enumerate(MODEL_CLASSES)}
    for rb in beats:
        keep = np.isin(rb.labels, MODEL_CLASSES)
        windows.append(rb.windows[keep])
        rr.append(rb.rr[keep])
        targets.append(np.array([index[label] for label in rb.labels[keep]], dtype=np.int64))
        records.append(np.full(int(keep.sum()), rb.record, dtype="<U8"))
    return TrainingSet(
        windows=np.concatenate(windows),
        rr=np.concatenate(rr),
        targets=np.concatenate(targets),
        records=np.concatenate(records),
    )


def data_fingerprint(data_dir: Path, records: Sequence[str]) -> str:
    """sha256 over the record files used, so a model card names exactly the data it saw."""
    digest = hashlib.sha256()
    for name in sorted(records):
        for suffix in (".hea", ".dat", ".atr"):
            path = data_dir / f"{name}{suffix}"
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
