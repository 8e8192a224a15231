"""Rhythm alarm rules: each condition raises its alarm once per episode, with evidence."""

from __future__ import annotations

from ecgstream.alarms import AlarmConfig, ClassifiedBeat, RhythmMonitor

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
    monitor = RhythmMonitor("bed-1", config)
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
    assert alarms[0].severity == "medium"


def test_a_pause_over_three_seconds() -> None:
    rr = [0.8] * 5 + [3.5] + [0.8] * 5 + [2.9] + [0.8] * 3
    beats = _beats("N" * len(rr), rr)
    alarms = [a for a in _run(beats) if a.kind == "pause"]
    assert len(alarms) == 1
    assert alarms[0].start_sample == beats[4].sample  # the last beat before the pause
    assert alarms[0].evidence["pause_s"] == 3.5


def test_pvc_burden_over_a_window() -> None:
    labels = "N" * 60 + "NNNV" * 30 + "N" * 120
    alarms = [a for a in _run(_beats(labels, 0.8)) if a.kind == "pvc_burden"]
    assert len(alarms) == 1
    assert alarms[0].evidence["burden"] > 0.2


def test_replaying_the_same_beats_gives_the_same_alarm_ids() -> None:
    beats = _beats("NNNNVVVVNN" * 3, 0.45)
    first = [a.alarm_id for a in _run(beats)]
    assert first and first == [a.alarm_id for a in _run(beats)]
