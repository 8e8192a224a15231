"""Rhythm alarms from the stream of classified beats of one patient.

Each alarm is an *episode* with a start: it is raised once, when its condition is first met, and
not again until the condition has cleared (with hysteresis) and come back. Its identity is
(device, kind, first sample of the evidence), so a re-processed stretch of signal produces the
same alarm id and sinks keep one row.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

CLINICAL_KINDS = ("vtach", "brady", "tachy", "pause", "pvc_burden")


@dataclass(frozen=True)
class AlarmConfig:
    vtach_min_beats: int = 3  # consecutive V beats
    vtach_min_bpm: float = 100.0
    rate_window_beats: int = 8  # heart rate = mean of the last RR intervals
    brady_below_bpm: float = 40.0
    brady_clear_bpm: float = 45.0
    tachy_above_bpm: float = 130.0
    tachy_clear_bpm: float = 120.0
    pause_s: float = 3.0
    pvc_window_beats: int = 60
    pvc_burden_above: float = 0.20
    pvc_burden_clear: float = 0.15


@dataclass(frozen=True)
class ClassifiedBeat:
    sample: int  # device sample index of the R peak
    time_s: float  # unix time of the R peak
    label: str  # N, S, V, F or Q
    rr_prev_s: float | None  # None for a device's first beat


@dataclass(frozen=True)
class Alarm:
    alarm_id: str
    device_id: str
    kind: str  # vtach, brady, tachy, pause, pvc_burden
    severity: str  # high, medium
    start_sample: int
    start_time: float
    evidence: dict[str, Any] = field(default_factory=dict)
    category: str = "clinical"


class RhythmMonitor:
    """Per-device alarm state; feed beats in order with `add`."""

    def __init__(self, device_id: str, config: AlarmConfig | None = None) -> None:
        self.device_id = device_id
        self.config = config or AlarmConfig()
        c = self.config
        self._v_run: list[ClassifiedBeat] = []
        self._vtach_active = False
        self._rr: deque[float] = deque(maxlen=c.rate_window_beats)
        self._rate_beats: deque[ClassifiedBeat] = deque(maxlen=c.rate_window_beats + 1)
        self._brady_active = False
        self._tachy_active = False
        self._labels: deque[ClassifiedBeat] = deque(maxlen=c.pvc_window_beats)
        self._pvc_active = False
        self._last: ClassifiedBeat | None = None

    def add(self, beat: ClassifiedBeat) -> list[Alarm]:
        alarms: list[Alarm] = []
        pause = self.config.pause_s
        if self._last is not None and beat.rr_prev_s is not None and beat.rr_prev_s > pause:
            evidence = {"pause_s": round(beat.rr_prev_s, 3), "threshold_s": pause}
            alarms.append(self._alarm("pause", "high", self._last, evidence))
        alarms += self._vtach(beat)
        alarms += self._rate(beat)
        alarms += self._pvc_burden(beat)
        self._last = beat
        return alarms

    # -- rules -------------------------------------------------------------------------------

    def _vtach(self, beat: ClassifiedBeat) -> list[Alarm]:
        c = self.config
        if beat.label != "V":
            self._v_run = []
            self._vtach_active = False
            return []
        self._v_run.append(beat)
        if self._vtach_active or len(self._v_run) < c.vtach_min_beats:
            return []
        run = self._v_run
        intervals = [b.rr_prev_s for b in run[1:] if b.rr_prev_s is not None]
        if not intervals:
            return []
        bpm = 60.0 / (sum(intervals) / len(intervals))
        if bpm <= c.vtach_min_bpm:
            return []
        self._vtach_active = True
        return [
            self._alarm(
                "vtach",
                "high",
                run[0],
                {
                    "beats": len(run),
                    "rate_bpm": round(bpm, 1),
                    "beat_samples": [b.sample for b in run],
                },
            )
        ]

    def _rate(self, beat: ClassifiedBeat) -> list[Alarm]:
        c = self.config
        self._rate_beats.append(beat)
        if beat.rr_prev_s is None:
            return []
        self._rr.append(beat.rr_prev_s)
        if len(self._rr) < c.rate_window_beats:
            return []
        bpm = 60.0 / (sum(self._rr) / len(self._rr))
        first = self._rate_beats[0]
        alarms = []
        if self._brady_active and bpm > c.brady_clear_bpm:
            self._brady_active = False
        elif not self._brady_active and bpm < c.brady_below_bpm:
            self._brady_active = True
            alarms.append(self._alarm("brady", "high", first, {"rate_bpm": round(bpm, 1)}))
        if self._tachy_active and bpm < c.tachy_clear_bpm:
            self._tachy_active = False
        elif not self._tachy_active and bpm > c.tachy_above_bpm:
            self._tachy_active = True
            alarms.append(self._alarm("tachy", "medium", first, {"rate_bpm": round(bpm, 1)}))
        return alarms

    def _pvc_burden(self, beat: ClassifiedBeat) -> list[Alarm]:
        c = self.config
        self._labels.append(beat)
        if len(self._labels) < c.pvc_window_beats:
            return []
        burden = sum(1 for b in self._labels if b.label == "V") / len(self._labels)
        if self._pvc_active and burden < c.pvc_burden_clear:
            self._pvc_active = False
        elif not self._pvc_active and burden > c.pvc_burden_above:
            self._pvc_active = True
            return [
                self._alarm(
                    "pvc_burden",
                    "medium",
                    self._labels[0],
                    {"burden": round(burden, 3), "window_beats": c.pvc_window_beats},
                )
            ]
        return []

    def _alarm(
        self, kind: str, severity: str, start: ClassifiedBeat, evidence: dict[str, Any]
    ) -> Alarm:
        return Alarm(
            alarm_id=f"{self.device_id}:{kind}:{start.sample}",
            device_id=self.device_id,
            kind=kind,
            severity=severity,
            start_sample=start.sample,
            start_time=start.time_s,
            evidence=evidence,
        )
