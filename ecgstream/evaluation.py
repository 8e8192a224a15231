"""`ecgstream evaluate`: the full streaming path on whole records, scored the EC57 way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgstream.alarms import Alarm, AlarmConfig, RhythmMonitor, replay_alarms
from ecgstream.artifact import ModelArtifact
from ecgstream.class_join import classified_beats
from ecgstream.dataset import detect_beats_and_ticks
from ecgstream.ec57 import RecordScore, score_record
from ecgstream.monitoring.signal_quality import judge_signal, mark_monitor
from ecgstream.records import (
    load_excluded_intervals,
    load_record,
    load_reference_beats,
    load_rhythm_notes,
    outside_intervals,
)
from ecgstream.rhythm.reference import Episode, reference_episodes
from ecgstream.rhythm.scoring import AlarmScore, score_alarms
from ecgstream.splits import PACED


@dataclass(frozen=True, eq=False)
class RecordResult:
    """A scored record and what was compared, for the table, the JSON and the plots."""

    score: RecordScore
    fs: float
    lead: str
    signal_mv: np.ndarray
    ref_samples: np.ndarray
    ref_labels: np.ndarray
    det_samples: np.ndarray
    det_labels: np.ndarray
    alarms: list[Alarm]
    reference_episodes: list[Episode]
    alarm_score: AlarmScore


def evaluate_record(
    model: ModelArtifact,
    data_dir: Path,
    name: str,
    chunk_samples: int | None = None,
    alarm_config: AlarmConfig | None = None,
) -> RecordResult:
    record = load_record(data_dir, name)
    reference = load_reference_beats(data_dir, name)
    lead, beats, ticks = detect_beats_and_ticks(record, model.preprocess, chunk_samples)
    det_samples = np.array([b.device_sample for b in beats], dtype=np.int64)
    second_lead = np.array([b.features.second_lead_qrs for b in beats], dtype=np.float64)
    if beats:
        windows = np.stack([b.features.window for b in beats])
        rr = np.stack([b.features.rr for b in beats])
        det_labels, _ = model.predict(windows, rr)
    else:
        det_labels = np.zeros(0, dtype="<U1")
    # EC57 leaves ventricular flutter/fibrillation episodes out of beat-by-beat comparison
    excluded = load_excluded_intervals(data_dir, name)
    keep_ref = outside_intervals(reference.samples, excluded)
    keep_det = outside_intervals(det_samples, excluded)
    score = score_record(
        name,
        record.fs,
        reference.samples[keep_ref],
        reference.labels[keep_ref],
        det_samples[keep_det],
        det_labels[keep_det],
        score_classes=name not in PACED,
    )
    monitor = RhythmMonitor(name, alarm_config, fs=record.fs)
    # the stream judges a device's signal quality per chunk (1 s) before its beats and ticks
    judged, technical = judge_signal(name, record.lead(lead), record.fs, lead)
    mark_monitor(monitor, judged)
    classified = classified_beats(det_samples, det_labels, second_lead, record.fs)
    alarms = replay_alarms(monitor, classified, ticks)
    alarms = sorted([*technical, *alarms], key=lambda a: a.raised_sample or a.start_sample)
    episodes = reference_episodes(
        reference.samples,
        reference.labels,
        load_rhythm_notes(data_dir, name),
        record.fs,
        record.n_samples,
    )
    alarm_score = score_alarms(
        episodes,
        alarms,
        monitor.af_episodes,
        record.fs,
        record.n_samples,
        inhibitions=monitor.inhibitions,
        inhibited=monitor.inhibited,
    )
    return RecordResult(
        score=score,
        fs=record.fs,
        lead=lead,
        signal_mv=record.lead(lead),
        ref_samples=reference.samples,
        ref_labels=reference.labels,
        det_samples=det_samples,
        det_labels=det_labels,
        alarms=alarms,
        reference_episodes=episodes,
        alarm_score=alarm_score,
    )


def evaluate_records(
    model: ModelArtifact,
    data_dir: Path,
    records: Sequence[str],
    on_record: Callable[[RecordResult], None] = lambda result: None,
) -> list[RecordResult]:
    results = []
    for name in records:
        result = evaluate_record(model, data_dir, name)
        on_record(result)
        results.append(result)
    return results
