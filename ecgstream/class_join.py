"""Where a detected beat meets its class: the one join of the model's answer with the beat, its
RR interval and the rhythm rules.

The stream (`processing.StreamProcessor.complete`), `evaluate` (`evaluation`), the REST API
(`segment.segment_result`) and the edge runner (`edge.runner`) all read classes, RR intervals
and alarm events through these functions, so a beat gets the same label, the same RR and the
same alarms whichever path it took.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ecgstream.alarms import Alarm, ClassifiedBeat, RhythmMonitor
from ecgstream.messages import AlarmEvent

PROBABILITY_DECIMALS = 5  # what a beat message carries: enough to rank, no false precision


def read_classes(
    probabilities: np.ndarray, classes: Sequence[str]
) -> tuple[list[str], list[tuple[float, ...]]]:
    """Each beat's class (the most probable) and its probabilities, rounded as they are sent."""
    if not len(probabilities):
        return [], []
    labels = [str(c) for c in np.asarray(classes)[np.asarray(probabilities).argmax(axis=1)]]
    rounded = [tuple(round(float(p), PROBABILITY_DECIMALS) for p in row) for row in probabilities]
    return labels, rounded


def rr_interval(previous_sample: int | None, sample: int, fs: float) -> float | None:
    """Seconds since the device's previous beat; None for its first."""
    return None if previous_sample is None else (sample - previous_sample) / fs


def classified_beats(
    samples: Sequence[int] | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    second_lead_qrs: Sequence[float] | np.ndarray,
    fs: float,
    *,
    time_origin: float = 0.0,
    previous_sample: int | None = None,
) -> list[ClassifiedBeat]:
    """The beats as the rhythm rules see them, from a stretch whose classes are known (a record,
    a segment, a batch): RR from each beat's predecessor (`previous_sample` before the first)."""
    beats = []
    previous = previous_sample
    seconds = np.asarray(second_lead_qrs).tolist()
    for sample, label, second in zip(np.asarray(samples).tolist(), labels, seconds, strict=True):
        rr_prev = rr_interval(previous, sample, fs)
        beats.append(ClassifiedBeat(sample, time_origin + sample / fs, str(label), rr_prev, second))
        previous = sample
    return beats


def alarm_events(
    monitor: RhythmMonitor,
    raised: Sequence[Alarm],
    patient_id: str,
    model_version: str,
    time_origin: float = 0.0,
) -> list[AlarmEvent]:
    """What one call of the monitor raised, then the AF/VF episodes that call ended (taken from
    the monitor, so each end is reported once)."""
    events = [AlarmEvent(a, patient_id, model_version) for a in raised]
    events += [
        AlarmEvent(
            e.alarm,
            patient_id,
            model_version,
            ended_sample=e.end_sample,
            ended_time=time_origin + e.end_sample / monitor.fs,
        )
        for e in monitor.pop_ended()
    ]
    return events
