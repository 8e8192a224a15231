"""Rhythm alarm rules: each condition raises its alarm once per episode, with evidence."""

from __future__ import annotations

import numpy as np

from ecgstream.alarms import AlarmConfig, ClassifiedBeat, RhythmMonitor
from ecgstream.rhythm.ticks import RhythmTick

FS = 360.0


def _beats(labels: str, rr_s: list[float] | float) -> list[ClassifiedBeat]:
    intervals = rr_s if isinstance(rr_s, list) else [rr_s] * len(labels)
    beats, t = [], 10.0
    for i, label in enumerate(labels):
        if i:
            t += intervals[i]
        beats.append(ClassifiedBeat(round(t * FS), t, label, intervals[i] if i else None))
    return beats


def _run(beats: list[ClassifiedBeat], config: AlarmConfig | None = None) -> list:
    monitor = RhythmMonitor("bed-1", config, fs=FS)
    return [alarm for beat in beats for alarm in monitor.add(beat)]


def test_three_fast_v_beats_raise_vtach_once_per_run() -> None:
    beats = _beats("NNNNVVVVVVNNNNVVVNN", 0.5)  # 120 bpm
    alarms = [a for a in _run(beats) if a.kind == "vtach"]
    assert [a.start_sample for a in alarms] == [beats[4].sample, beats[14].sample]
    assert alarms[0].evidence["beats"] == 3
    assert alarms[0].evidence["rate_bpm"] == 120.0
    assert alarms[0].alarm_id == f"bed-1:vtach:{beats[4].sample}"


def test_slow_v_runs_are_not_vtach() -> None:
    beats = _beats("NNVVVVNN", 0.8)  # 75 bpm: idioventricular, not VT
    assert [a for a in _run(beats) if a.kind == "vtach"] == []


def test_a_pair_of_v_beats_is_not_vtach() -> None:
    assert [a for a in _run(_beats("NNVVNNVVNN", 0.5)) if a.kind == "vtach"] == []


def test_bradycardia_with_hysteresis() -> None:
    rr = [1.0] * 10 + [2.0] * 12 + [1.0] * 12 + [2.0] * 12
    alarms = [a for a in _run(_beats("N" * len(rr), rr)) if a.kind == "brady"]
    assert len(alarms) == 2  # two separate episodes
    assert all(a.evidence["rate_bpm"] < 40 for a in alarms)


def test_tachycardia() -> None:
    rr = [0.8] * 10 + [0.4] * 20
    alarms = [a for a in _run(_beats("N" * len(rr), rr)) if a.kind == "tachy"]
    assert len(alarms) == 1
    assert alarms[0].severity == "low"  # IEC 60601-1-8: rate limits are low priority


def _ticks(silent_since: int, until_s: float, step_s: float = 0.25) -> list[RhythmTick]:
    """The clock of a stream whose last QRS was at `silent_since` (no VF measures)."""
    ticks, t = [], silent_since / FS + step_s
    while t <= until_s:
        ticks.append(RhythmTick(round(t * FS), silent_since, t - silent_since / FS, None, False))
        t += step_s
    return ticks


def test_pause_then_asystole_from_the_clock_without_a_next_beat() -> None:
    monitor = RhythmMonitor("bed-1", fs=FS)
    last_qrs = round(100.0 * FS)
    raised = [a for t in _ticks(last_qrs, 106.0) for a in monitor.observe(t, t.sample / FS)]
    assert [a.kind for a in raised] == ["pause", "asystole"]
    pause, asystole = raised
    assert pause.severity == "low" and asystole.severity == "high"
    assert pause.start_sample == asystole.start_sample == last_qrs
    assert asystole.raised_sample == round(104.0 * FS)  # at 4 s of silence, not at the next beat
    assert pause.raised_sample == round(103.0 * FS)
    # the same silence seen again (a replay) raises nothing new; a new one does
    assert [a for t in _ticks(last_qrs, 106.0) for a in monitor.observe(t, 0.0)] == []
    later = round(110.0 * FS)
    assert [a.kind for t in _ticks(later, 115.0) for a in monitor.observe(t, 0.0)] == [
        "pause",
        "asystole",
    ]


def test_three_fast_s_beats_raise_svt() -> None:
    beats = _beats("NNNNSSSSNNNN", 0.45)
    alarms = [a for a in _run(beats) if a.kind == "svt"]
    assert [a.start_sample for a in alarms] == [beats[4].sample]
    assert alarms[0].severity == "medium"


def test_irregular_rhythm_raises_afib_and_ends_it() -> None:
    rng = np.random.default_rng(3)
    regular = [0.8] * 40
    irregular = [float(x) for x in 0.5 + 0.6 * rng.random(80)]  # as AF: no two alike
    rr = regular + irregular + regular * 2
    monitor = RhythmMonitor("bed-1", fs=FS)
    beats = _beats("N" * len(rr), rr)
    alarms = [a for b in beats for a in monitor.add(b) if a.kind == "afib"]
    assert len(alarms) == 1
    assert beats[40].sample <= alarms[0].start_sample <= beats[60].sample
    assert alarms[0].severity == "medium"
    ((_, end),) = monitor.af_episodes
    assert end is not None and beats[120].sample < end < beats[-1].sample


def test_ventricular_bigeminy_is_not_afib() -> None:
    """Alternating short and long intervals are regular once the V beats' intervals are out."""
    labels = "NV" * 80
    rr = [0.6 if label == "V" else 1.0 for label in labels]
    assert [a for a in _run(_beats(labels, rr)) if a.kind == "afib"] == []


def test_pvc_burden_over_a_window() -> None:
    labels = "N" * 60 + "NNNV" * 30 + "N" * 120
    alarms = [a for a in _run(_beats(labels, 0.8)) if a.kind == "pvc_burden"]
    assert len(alarms) == 1
    assert alarms[0].evidence["burden"] > 0.2


def test_replaying_the_same_beats_gives_the_same_alarm_ids() -> None:
    beats = _beats("NNNNVVVVNN" * 3, 0.45)
    first = [a.alarm_id for a in _run(beats)]
    assert first and first == [a.alarm_id for a in _run(beats)]


def test_a_v_beat_the_second_lead_does_not_show_neither_extends_nor_breaks_a_run() -> None:
    """A detection in noise of the detection lead (no QRS in the other lead) is skipped by the
    ventricular-run rule: V ? V is a pair, V V ? V is a run of three at the seen beats' rate."""

    def unseen(beats: list[ClassifiedBeat], *index: int) -> list[ClassifiedBeat]:
        return [
            ClassifiedBeat(b.sample, b.time_s, b.label, b.rr_prev_s, 0.3 if i in index else 1.0)
            for i, b in enumerate(beats)
        ]

    pair = unseen(_beats("NNNVVVNNN", 0.5), 4)
    assert [a for a in _run(pair) if a.kind == "vtach"] == []
    run = unseen(_beats("NNNVVVVNNN", 0.3), 4)  # 0.3 s steps; seen beats 0.6 s apart at 4
    (alarm,) = [a for a in _run(run) if a.kind == "vtach"]
    assert alarm.start_sample == run[3].sample
    assert alarm.evidence["beat_samples"] == [run[3].sample, run[5].sample, run[6].sample]
    assert alarm.evidence["rate_bpm"] == round(60 / ((0.6 + 0.3) / 2), 1)
    # the check can be switched off: then the unseen beat counts
    off = AlarmConfig(vtach_second_lead_min=0.0)
    assert [a.start_sample for a in _run(pair, off) if a.kind == "vtach"] == [pair[3].sample]
