"""A whole ECG segment classified at once (the REST API, its baseline and the edge runner): the
stream's own preprocessing, the same alarm rules, one answer. The stream and this path share
`PatientStream` and `RhythmMonitor`, so a segment gives the beats the stream would give."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgstream.alarms import Alarm, RhythmMonitor, replay_alarms
from ecgstream.class_join import classified_beats, read_classes
from ecgstream.monitoring.signal_quality import judge_signal, mark_monitor
from ecgstream.rhythm.ticks import RhythmTick
from ecgstream.signal.chunk_stats import WindowStats
from ecgstream.stream import PatientStream, PreprocessConfig, choose_leads

if TYPE_CHECKING:  # torch stays out of the edge runner's imports
    from ecgstream.artifact import ModelArtifact


@dataclass(frozen=True, eq=False)
class SegmentBeats:
    lead: str  # the detection lead
    samples: np.ndarray  # int64, R peaks as sample indices of the segment
    windows: np.ndarray  # float32 (n, channels, window)
    rr: np.ndarray  # float32 (n, n_rr)
    second_lead_qrs: np.ndarray  # float64 (n,): BeatWindow.second_lead_qrs
    ticks: tuple[RhythmTick, ...] = ()  # the rhythm clock over the segment
    judged: tuple[WindowStats, ...] = ()  # signal quality per second of the detection lead
    technical: tuple[Alarm, ...] = ()  # the sensor faults it raised

    def __len__(self) -> int:
        return int(self.samples.size)


def detect_segment(
    x_mv: np.ndarray, fs: float, lead_names: Sequence[str], preprocess: PreprocessConfig
) -> SegmentBeats:
    """Beats of a (n_leads, n) millivolt segment; raises ValueError if no usable lead."""
    leads = choose_leads(list(lead_names), preprocess)
    stream = PatientStream(fs, preprocess, rhythm=True)
    beats = stream.push(np.asarray(x_mv, dtype=np.float32)[leads])
    beats += stream.flush()
    ticks = tuple(stream.pop_ticks())
    lead = lead_names[leads[0]]
    judged, technical = judge_signal("segment", np.asarray(x_mv[leads[0]], np.float32), fs, lead)
    channels, window = preprocess.beat.channels, preprocess.beat.window
    return SegmentBeats(
        lead=lead,
        samples=np.array([b.device_sample for b in beats], dtype=np.int64),
        windows=(
            np.stack([b.features.window for b in beats])
            if beats
            else np.zeros((0, channels, window), np.float32)
        ),
        rr=np.stack([b.features.rr for b in beats])
        if beats
        else np.zeros((0, preprocess.beat.n_features), np.float32),
        second_lead_qrs=np.array([b.features.second_lead_qrs for b in beats], dtype=np.float64),
        ticks=ticks,
        judged=tuple(judged),
        technical=tuple(technical),
    )


def segment_result(
    beats: SegmentBeats,
    probabilities: np.ndarray,
    classes: Sequence[str],
    model_version: str,
    fs: float,
) -> dict[str, Any]:
    """The answer: every beat with its class and probabilities, and the rhythm alarms the
    stream's rules raise over the segment (times in seconds from its start)."""
    labels, rounded = read_classes(probabilities, classes)
    monitor = RhythmMonitor("segment", fs=fs)
    mark_monitor(monitor, list(beats.judged))
    classified = classified_beats(beats.samples, labels, beats.second_lead_qrs, fs)
    out_beats = [
        {
            "sample": beat.sample,
            "time_s": round(beat.time_s, 4),
            "label": beat.label,
            "probabilities": dict(zip(classes, proba, strict=True)),
            "signal_fault": monitor.fault_at(beat.sample),
        }
        for beat, proba in zip(classified, rounded, strict=True)
    ]
    raised = replay_alarms(monitor, classified, beats.ticks)
    raised = sorted([*beats.technical, *raised], key=lambda a: a.raised_sample or a.start_sample)
    ends = {start: end for start, end in [*monitor.af_episodes, *monitor.vf_episodes]}
    alarms = [
        {
            "kind": alarm.kind,
            "category": alarm.category,
            "severity": alarm.severity,
            "priority": alarm.severity,
            "start_sample": alarm.start_sample,
            "start_time_s": round(alarm.start_time, 3),
            "raised_time_s": round((alarm.raised_sample or alarm.start_sample) / fs, 3),
            # episodes with a duration (AF, VF) end inside the segment or last past it (null)
            "end_time_s": (
                round(end / fs, 3)
                if alarm.kind in ("afib", "vfib")
                and (end := ends.get(alarm.start_sample)) is not None
                else None
            ),
            "evidence": alarm.evidence,
        }
        for alarm in raised
    ]
    return {
        "model_version": model_version,
        "fs": fs,
        "lead": beats.lead,
        "n_beats": len(out_beats),
        "beats": out_beats,
        "alarms": alarms,
    }


def classify_segment(
    artifact: ModelArtifact, x_mv: np.ndarray, fs: float, lead_names: Sequence[str]
) -> dict[str, Any]:
    """Detect, classify and raise alarms in one call (ValueError if no usable lead)."""
    beats = detect_segment(x_mv, fs, lead_names, artifact.preprocess)
    proba = artifact.predict_proba(beats.windows, beats.rr)
    return segment_result(beats, proba, artifact.classes, artifact.version, fs)
