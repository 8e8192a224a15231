"""The one beat/class join (ecgstream/class_join.py): classes read off probabilities, RR from the
previous beat, and alarm events with the episodes each monitor call ended."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecgstream.alarms import Alarm, EpisodeEnd
from ecgstream.class_join import alarm_events, classified_beats, read_classes, rr_interval

CLASSES = ("N", "S", "V", "F")


def test_classes_are_the_most_probable_and_probabilities_are_rounded_as_sent() -> None:
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.0123456, 0.9876544, 0.0, 0.0]], np.float32)
    labels, rounded = read_classes(probabilities, CLASSES)
    assert labels == ["N", "S"]
    assert rounded[1] == (0.01235, 0.98765, 0.0, 0.0)
    assert all(isinstance(label, str) for label in labels)
    assert read_classes(np.zeros((0, 4), np.float32), CLASSES) == ([], [])


def test_rr_comes_from_the_previous_beat_also_across_batches() -> None:
    assert rr_interval(None, 500, 360.0) is None
    assert rr_interval(140, 500, 360.0) == 1.0
    first = classified_beats([100, 460], ["N", "V"], [1.0, 0.2], 360.0, time_origin=1000.0)
    assert [b.rr_prev_s for b in first] == [None, 1.0]
    assert [b.time_s for b in first] == [1000.0 + 100 / 360, 1000.0 + 460 / 360]
    assert [(b.label, b.second_lead_qrs) for b in first] == [("N", 1.0), ("V", 0.2)]
    # the next batch of the same device continues from its last beat
    second = classified_beats([640], ["N"], [1.0], 360.0, previous_sample=first[-1].sample)
    assert second[0].rr_prev_s == 0.5


def _alarm(kind: str, sample: int) -> Alarm:
    return Alarm(f"a-{kind}-{sample}", "bed", kind, "high", sample, sample / 360.0)


@dataclass
class _Monitor:
    """The two things the join reads of a RhythmMonitor: its rate and the episodes it ended."""

    fs: float = 360.0
    ended: list[EpisodeEnd] = field(default_factory=list)

    def pop_ended(self) -> list[EpisodeEnd]:
        ended, self.ended = self.ended, []
        return ended


def test_alarm_events_carry_the_raised_alarms_then_each_ended_episode_once() -> None:
    monitor = _Monitor()
    vf = _alarm("vfib", 3600)
    monitor.ended.append(EpisodeEnd(vf, 7200))
    events = alarm_events(monitor, [_alarm("vtach", 7000)], "pt", "m1", time_origin=100.0)  # type: ignore[arg-type]
    assert [(e.alarm.kind, e.is_end) for e in events] == [("vtach", False), ("vfib", True)]
    assert events[1].ended_sample == 7200 and events[1].ended_time == 100.0 + 7200 / 360.0
    assert {e.model_version for e in events} == {"m1"} and {e.patient_id for e in events} == {"pt"}
    assert alarm_events(monitor, [], "pt", "m1") == []  # the end was taken: not reported twice
