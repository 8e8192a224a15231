"""Rhythm alarms of one patient, from its classified beats and from the stream's clock.

Each alarm is an *episode* with a start: it is raised once, when its condition is first met, and
not again until the condition has cleared (with hysteresis) and come back. Its identity is
(device, kind, first sample of the evidence), so a re-processed stretch of signal produces the
same alarm id and sinks keep one row.

Two inputs, each in stream order: clock ticks (`observe`: asystole, pause, VF) and beats (`add`:
vtach, svt, afib, rate, PVC burden). Tick rules never read beats, and a beat rule reads only
ticks at or before its beat (VF subsumes the beat alarms). The stream's ticks always run ahead
of its beats (a beat waits for the next one), so feeding a batch's ticks before its beats gives
the alarms of any other order: the stream, `evaluate`, the REST API and the edge runner agree.
"""

from __future__ import annotations

import itertools
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ecgstream.rhythm.ticks import RhythmTick

CLINICAL_KINDS = (
    "asystole",
    "vfib",
    "vtach",
    "afib",
    "svt",
    "brady",
    "tachy",
    "pause",
    "pvc_burden",
)
# IEC 60601-1-8 alarm priorities: high = immediate response (death within minutes), medium =
# prompt response, low = awareness
PRIORITIES = {
    "asystole": "high",
    "vfib": "high",
    "vtach": "high",
    "afib": "medium",
    "svt": "medium",
    "brady": "low",
    "tachy": "low",
    "pause": "low",
    "pvc_burden": "low",
}


@dataclass(frozen=True)
class AlarmConfig:
    asystole_s: float = 4.0  # no QRS this long (IEC 60601-2-27: asystole alarm within 10 s)
    pause_s: float = 3.0
    vtach_min_beats: int = 3  # consecutive V beats
    vtach_min_bpm: float = 100.0
    # a "V" beat whose QRS the second lead does not show (peak-to-peak under this share of the
    # patient's typical beat there) is a detection in noise: it neither extends nor breaks a
    # ventricular run (chosen on DS1 CV and the EC57 noise records; decision 77)
    vtach_second_lead_min: float = 0.67
    svt_min_beats: int = 3  # consecutive S beats
    svt_min_bpm: float = 100.0
    # VF: both signal measures (see rhythm.ventricular) on `vf_ticks` consecutive seconds
    vf_tcsc_above: float = 0.35
    vf_concentration_above: float = 0.80
    vf_min_amplitude_mv: float = 0.1
    vf_ticks: int = 4
    vf_subsumes_s: float = 4.0  # beat alarms within this after a VF-like second are not raised
    # AF: irregularity = median |successive RR difference| / median RR over the last
    # `af_window` intervals that touch no ectopic (V or S) beat
    af_window: int = 32
    af_min_intervals: int = 16
    af_irregularity_above: float = 0.10
    af_irregularity_clear: float = 0.06
    af_beats: int = 8  # consecutive beats above (below) to start (end) an episode
    rate_window_beats: int = 8  # heart rate = mean of the last RR intervals
    brady_below_bpm: float = 40.0
    brady_clear_bpm: float = 45.0
    tachy_above_bpm: float = 130.0
    tachy_clear_bpm: float = 120.0
    pvc_window_beats: int = 60
    pvc_burden_above: float = 0.20
    pvc_burden_clear: float = 0.15


@dataclass(frozen=True)
class ClassifiedBeat:
    sample: int  # device sample index of the R peak
    time_s: float  # unix time of the R peak
    label: str  # N, S, V, F or Q
    rr_prev_s: float | None  # None for a device's first beat
    second_lead_qrs: float = 1.0  # BeatWindow.second_lead_qrs: is the QRS in the other lead?


@dataclass(frozen=True)
class Alarm:
    alarm_id: str
    device_id: str
    kind: str  # one of CLINICAL_KINDS, or "technical"
    severity: str  # high, medium, low
    start_sample: int
    start_time: float
    evidence: dict[str, Any] = field(default_factory=dict)
    category: str = "clinical"
    raised_sample: int | None = None  # the stream position at which the rule fired


@dataclass(frozen=True)
class EpisodeEnd:
    """An episode with a duration (AF, VF) ended: `alarm` is the alarm that opened it."""

    alarm: Alarm
    end_sample: int


EPISODES_KEPT = 1000
DURATION_KINDS = ("afib", "vfib")  # episodes whose end is published too


class RhythmMonitor:
    """Per-device alarm state: feed beats in order with `add`, clock ticks with `observe`."""

    def __init__(
        self,
        device_id: str,
        config: AlarmConfig | None = None,
        fs: float = 360.0,
        session: str = "",
    ) -> None:
        self.device_id = device_id
        # alarm ids are unique per boot session: a rebooted device counts samples from 0 again
        self._id_prefix = f"{device_id}:{session}" if session else device_id
        self.config = config or AlarmConfig()
        self.fs = fs  # the device's sampling rate, for times of tick alarms
        c = self.config
        self._runs: dict[str, list[ClassifiedBeat]] = {"V": [], "S": []}
        self._run_active = {"V": False, "S": False}
        self._rr: deque[float] = deque(maxlen=c.rate_window_beats)
        self._rate_beats: deque[ClassifiedBeat] = deque(maxlen=c.rate_window_beats + 1)
        self._brady_active = False
        self._tachy_active = False
        self._labels: deque[ClassifiedBeat] = deque(maxlen=c.pvc_window_beats)
        self._pvc_active = False
        self._last: ClassifiedBeat | None = None
        self._af_intervals: deque[float] = deque(maxlen=c.af_window)
        self._af_active = False
        self._af_streak: list[ClassifiedBeat] = []
        self._af_calm = 0
        # (start, end) samples of the latest episodes with a duration, for scoring and answers
        self.af_episodes: deque[tuple[int, int | None]] = deque(maxlen=EPISODES_KEPT)
        self._silence_raised: dict[str, int | None] = {"pause": None, "asystole": None}
        self._vf_streak: list[RhythmTick] = []
        self._vf_active = False
        self._vf_calm = 0
        self.vf_episodes: deque[tuple[int, int | None]] = deque(maxlen=EPISODES_KEPT)
        # positions of VF-like seconds, kept until no beat can still look back at them (a
        # whole record's when its ticks are all judged first; bounded for a stream without beats)
        self._vf_like: deque[int] = deque(maxlen=86_400)
        self.subsumed = 0  # beat alarms not raised: VF-like signal, or SVT inside AF
        # the signal's analysability: (first sample, inhibiting fault or None) at each change
        self._signal: deque[tuple[int, str | None]] = deque(maxlen=EPISODES_KEPT)
        self.inhibited = 0  # arrhythmia alarms not raised: the signal could not be analysed
        self._open: dict[str, Alarm] = {}  # the raised alarm of each ongoing AF/VF episode
        self._ended: deque[EpisodeEnd] = deque(maxlen=EPISODES_KEPT)
        self.inhibitions: deque[tuple[int, int | None, str]] = deque(maxlen=EPISODES_KEPT)

    # -- signal quality ----------------------------------------------------------------------

    def mark_signal(self, sample: int, fault: str | None) -> None:
        """From `sample` on, the signal is unanalysable because of `fault` (None: analysable).
        Marks are positions, so beats and ticks judged later (or earlier) read the same."""
        current = self._signal[-1][1] if self._signal else None
        if fault == current:
            return
        self._signal.append((sample, fault))
        if current is not None:  # an inhibition ends (or turns into another fault's)
            start, _, name = self.inhibitions[-1]
            self.inhibitions[-1] = (start, sample, name)
        if fault is not None:
            self.inhibitions.append((sample, None, fault))

    def fault_at(self, sample: int) -> str | None:
        """The inhibiting fault at a stream position (None: the signal was analysable)."""
        for start, fault in reversed(self._signal):
            if start <= sample:
                return fault
        return None

    def _emit(self, alarms: list[Alarm], sample: int) -> list[Alarm]:
        """The alarms a rule raised at `sample`, unless the signal there was unanalysable."""
        if alarms and self.fault_at(sample) is not None:
            self.inhibited += len(alarms)
            return []
        for alarm in alarms:  # raised: its episode's end will be published too
            if alarm.kind in DURATION_KINDS:
                self._open[alarm.kind] = alarm
        return alarms

    def _end(self, kind: str, sample: int) -> None:
        opened = self._open.pop(kind, None)
        if opened is not None:  # an episode whose alarm was subsumed or inhibited ends unseen
            self._ended.append(EpisodeEnd(opened, sample))

    def pop_ended(self) -> list[EpisodeEnd]:
        """The AF/VF episodes (of raised alarms) that ended since the last call."""
        ended = list(self._ended)
        self._ended.clear()
        return ended

    # -- beats -------------------------------------------------------------------------------

    def add(self, beat: ClassifiedBeat) -> list[Alarm]:
        """A classified beat; every beat whose position the clock has passed (`observe` the
        ticks up to it first: the stream's ticks always run ahead of its beats, and
        `mark_signal` the signal's quality up to it). An episode whose alarm fell in an
        unanalysable stretch is counted in `inhibited` and not raised later."""
        in_af = self._af_active
        alarms = self._run(beat, "V", "vtach")
        svt = self._run(beat, "S", "svt")
        alarms += self._afib(beat)
        alarms += self._rate(beat)
        alarms += self._pvc_burden(beat)
        self._last = beat
        # a run of "S" beats inside AF is AF's ventricular response, not SVT
        if in_af and svt:
            self.subsumed += len(svt)
        else:
            alarms += svt
        # in VF the beat detector counts the fibrillation waves as fast beats: what the beat
        # rules would say (VT, tachycardia, irregularity) is VF, which the clock alarms on
        horizon = beat.sample - round(self.config.vf_subsumes_s * self.fs)
        while self._vf_like and self._vf_like[0] < horizon:
            self._vf_like.popleft()
        if alarms and any(s <= beat.sample for s in self._vf_like):
            self.subsumed += len(alarms)
            return []
        return self._emit(alarms, beat.sample)

    def _run(self, beat: ClassifiedBeat, label: str, kind: str) -> list[Alarm]:
        c = self.config
        min_beats, min_bpm = (
            (c.vtach_min_beats, c.vtach_min_bpm)
            if label == "V"
            else (c.svt_min_beats, c.svt_min_bpm)
        )
        if label == "V" and beat.label == "V" and beat.second_lead_qrs < c.vtach_second_lead_min:
            return []  # not seen in the other lead: a detection in noise, skipped
        if beat.label != label:
            self._runs[label] = []
            self._run_active[label] = False
            return []
        run = self._runs[label]
        run.append(beat)
        if self._run_active[label] or len(run) < min_beats:
            return []
        intervals = [(b.sample - a.sample) / self.fs for a, b in itertools.pairwise(run)]
        if not intervals:
            return []
        bpm = 60.0 / (sum(intervals) / len(intervals))
        if bpm <= min_bpm:
            return []
        self._run_active[label] = True
        evidence = {
            "beats": len(run),
            "rate_bpm": round(bpm, 1),
            "beat_samples": [b.sample for b in run],
        }
        return [self._alarm(kind, run[0].sample, run[0].time_s, beat.sample, evidence)]

    def _afib(self, beat: ClassifiedBeat) -> list[Alarm]:
        c = self.config
        last = self._last
        ectopic = ("V", "S", "Q")
        if (
            last is not None
            and beat.rr_prev_s is not None
            and beat.label not in ectopic
            and last.label not in ectopic
        ):
            self._af_intervals.append(beat.rr_prev_s)
        if len(self._af_intervals) < c.af_min_intervals:
            return []
        rr = list(self._af_intervals)
        successive = [abs(b - a) for a, b in itertools.pairwise(rr)]
        irregularity = statistics.median(successive) / statistics.median(rr)
        if not self._af_active:
            if irregularity > c.af_irregularity_above:
                self._af_streak.append(beat)
            else:
                self._af_streak = []
            if len(self._af_streak) < c.af_beats:
                return []
            self._af_active, self._af_calm = True, 0
            first = self._af_streak[0]
            self._af_streak = []
            self.af_episodes.append((first.sample, None))
            evidence = {"irregularity": round(float(irregularity), 3), "intervals": len(rr)}
            return [self._alarm("afib", first.sample, first.time_s, beat.sample, evidence)]
        self._af_calm = self._af_calm + 1 if irregularity < c.af_irregularity_clear else 0
        if self._af_calm >= c.af_beats:
            self._af_active = False
            self.af_episodes[-1] = (self.af_episodes[-1][0], beat.sample)
            self._end("afib", beat.sample)
        return []

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
        evidence = {"rate_bpm": round(bpm, 1)}
        if self._brady_active and bpm > c.brady_clear_bpm:
            self._brady_active = False
        elif not self._brady_active and bpm < c.brady_below_bpm:
            self._brady_active = True
            alarms.append(self._alarm("brady", first.sample, first.time_s, beat.sample, evidence))
        if self._tachy_active and bpm < c.tachy_clear_bpm:
            self._tachy_active = False
        elif not self._tachy_active and bpm > c.tachy_above_bpm:
            self._tachy_active = True
            alarms.append(self._alarm("tachy", first.sample, first.time_s, beat.sample, evidence))
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
            first = self._labels[0]
            evidence = {"burden": round(burden, 3), "window_beats": c.pvc_window_beats}
            return [self._alarm("pvc_burden", first.sample, first.time_s, beat.sample, evidence)]
        return []

    # -- clock -------------------------------------------------------------------------------

    def observe(self, tick: RhythmTick, tick_time_s: float) -> list[Alarm]:
        """A clock tick (`tick_time_s`: the device's time at it): silence and VF."""
        alarms = []
        for kind, limit in (("pause", self.config.pause_s), ("asystole", self.config.asystole_s)):
            if (
                tick.silent_s >= limit
                and tick.other_lead_active is False  # judged, and the other lead is quiet too
                and self._silence_raised[kind] != tick.silent_since
            ):
                self._silence_raised[kind] = tick.silent_since
                since = (
                    tick.silent_since
                    if tick.silent_since is not None
                    else tick.sample - round(tick.silent_s * self.fs)
                )
                evidence = {"silent_s": round(tick.silent_s, 2), "threshold_s": limit}
                alarms.append(
                    self._alarm(kind, since, tick_time_s - tick.silent_s, tick.sample, evidence)
                )
        if tick.vf is not None:
            alarms += self._vfib(tick, tick_time_s)
        return self._emit(alarms, tick.sample)

    def _vfib(self, tick: RhythmTick, tick_time_s: float) -> list[Alarm]:
        c, vf = self.config, tick.vf
        assert vf is not None
        present = (
            vf.tcsc > c.vf_tcsc_above
            and vf.concentration > c.vf_concentration_above
            and vf.amplitude_mv >= c.vf_min_amplitude_mv
        )
        if present:
            self._vf_like.append(tick.sample)
        if self._vf_active:
            self._vf_calm = 0 if present else self._vf_calm + 1
            if self._vf_calm >= c.vf_ticks:
                self._vf_active = False
                self.vf_episodes[-1] = (self.vf_episodes[-1][0], tick.sample)
                self._end("vfib", tick.sample)
            return []
        self._vf_streak = [*self._vf_streak, tick] if present else []
        if len(self._vf_streak) < c.vf_ticks:
            return []
        self._vf_active, self._vf_calm = True, 0
        first = self._vf_streak[0]
        self._vf_streak = []
        self.vf_episodes.append((first.sample, None))
        evidence = {
            "tcsc": vf.tcsc,
            "concentration": vf.concentration,
            "dominant_hz": vf.dominant_hz,
            "seconds": c.vf_ticks,
        }
        start_time = tick_time_s - (tick.sample - first.sample) / self.fs
        return [self._alarm("vfib", first.sample, start_time, tick.sample, evidence)]

    def _alarm(
        self, kind: str, start: int, start_time: float, raised: int, evidence: dict[str, Any]
    ) -> Alarm:
        return Alarm(
            alarm_id=f"{self._id_prefix}:{kind}:{start}",
            device_id=self.device_id,
            kind=kind,
            severity=PRIORITIES[kind],
            start_sample=start,
            start_time=start_time,
            evidence=evidence,
            raised_sample=raised,
        )


def replay_alarms(
    monitor: RhythmMonitor,
    beats: Iterable[ClassifiedBeat],
    ticks: Iterable[RhythmTick],
    time_origin: float = 0.0,
) -> list[Alarm]:
    """All alarms of a stretch whose beats are classified already (a record, a segment): the
    ticks through `observe`, then the beats through `add` (tick rules never read beats; beat
    rules read only ticks at or before the beat, so the stream's interleaving gives the same),
    in the order the stream raises them."""
    raised = [a for t in ticks for a in monitor.observe(t, time_origin + t.sample / monitor.fs)]
    raised += [a for beat in beats for a in monitor.add(beat)]
    return sorted(raised, key=lambda a: (a.raised_sample or a.start_sample, a.kind))
