"""The reference rhythm episodes of an annotated record, for scoring alarms.

From the annotators' rhythm notes (`+` annotations with `(VT`, `(VFL`, `(AFIB`, ...) and from
the reference beats themselves (runs, gaps, rate and burden windows), with the same thresholds
as the alarm rules (`AlarmConfig`): the reference says when a perfect monitor would alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecgstream.alarms import AlarmConfig

# MIT-BIH rhythm notes and the alarm kind each one is an episode of
RHYTHM_NOTES = {
    "(VT": "vtach",
    "(VFL": "vfib",
    "(VF": "vfib",
    "(AFIB": "afib",
    "(AFL": "afib",
    "(SVTA": "svt",
}


@dataclass(frozen=True)
class Episode:
    kind: str
    start: int  # sample
    end: int  # sample (inclusive)


def note_episodes(notes: Sequence[tuple[int, str]], n_samples: int) -> list[Episode]:
    """Each rhythm note lasts until the next one (or the record's end)."""
    episodes = []
    for i, (sample, note) in enumerate(notes):
        kind = RHYTHM_NOTES.get(note)
        if kind is None:
            continue
        end = notes[i + 1][0] if i + 1 < len(notes) else n_samples
        episodes.append(Episode(kind, int(sample), int(end)))
    return episodes


def _runs(
    samples: np.ndarray, labels: np.ndarray, label: str, min_beats: int, min_bpm: float, fs: float
) -> list[tuple[int, int]]:
    runs, begin = [], None
    for i in range(len(labels) + 1):
        inside = i < len(labels) and labels[i] == label
        if inside and begin is None:
            begin = i
        elif not inside and begin is not None:
            if i - begin >= min_beats:
                mean_rr = (samples[i - 1] - samples[begin]) / (i - 1 - begin) / fs
                if 60.0 / mean_rr >= min_bpm:
                    runs.append((int(samples[begin]), int(samples[i - 1])))
            begin = None
    return runs


def _stretches(flags: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True, as (start of the first, end of the last)."""
    out, begin = [], None
    for i, flag in enumerate([*flags.tolist(), False]):
        if flag and begin is None:
            begin = i
        elif not flag and begin is not None:
            out.append((int(starts[begin]), int(ends[i - 1])))
            begin = None
    return out


def _merge(episodes: list[Episode]) -> list[Episode]:
    """Overlapping episodes of one kind become one (a VT note and the V run inside it)."""
    merged: list[Episode] = []
    for e in sorted(episodes, key=lambda e: (e.kind, e.start)):
        last = merged[-1] if merged else None
        if last is not None and last.kind == e.kind and e.start <= last.end:
            merged[-1] = Episode(e.kind, last.start, max(last.end, e.end))
        else:
            merged.append(e)
    return sorted(merged, key=lambda e: (e.start, e.kind))


def reference_episodes(
    samples: np.ndarray,
    labels: np.ndarray,
    notes: Sequence[tuple[int, str]],
    fs: float,
    n_samples: int,
    config: AlarmConfig | None = None,
) -> list[Episode]:
    """Every reference episode of every alarm kind in one record."""
    c = config or AlarmConfig()
    samples = np.asarray(samples, dtype=np.int64)
    labels = np.asarray(labels)
    episodes = note_episodes(notes, n_samples)
    no_beats = [(e.start, e.end) for e in episodes if e.kind == "vfib"]  # nothing is annotated
    episodes += [
        Episode("vtach", a, b)
        for a, b in _runs(samples, labels, "V", c.vtach_min_beats, c.vtach_min_bpm, fs)
    ]
    episodes += [
        Episode("svt", a, b)
        for a, b in _runs(samples, labels, "S", c.svt_min_beats, c.svt_min_bpm, fs)
    ]
    if samples.size >= 2:
        gaps = np.diff(samples) / fs
        for i in np.flatnonzero(gaps > min(c.pause_s, c.asystole_s)):
            a, b = int(samples[i]), int(samples[i + 1])
            if any(a < end and b > start for start, end in no_beats):
                continue  # a gap in VF is VF, not silence
            if gaps[i] > c.pause_s:
                episodes.append(Episode("pause", a, b))
            if gaps[i] >= c.asystole_s:
                episodes.append(Episode("asystole", a, b))
    w = c.rate_window_beats
    if samples.size > w:
        # the rate at beat i: mean of the w intervals before it, as the monitor computes it
        rr = np.diff(samples) / fs
        mean_rr = np.convolve(rr, np.ones(w) / w, mode="valid")
        bpm = 60.0 / mean_rr
        ends, starts = samples[w:], samples[: samples.size - w]
        across_vf = np.array(
            [any(a < e and b > s for s, e in no_beats) for a, b in zip(starts, ends, strict=True)],
            dtype=bool,
        )
        for kind, flags in (("brady", bpm < c.brady_below_bpm), ("tachy", bpm > c.tachy_above_bpm)):
            episodes += [
                Episode(kind, a, b) for a, b in _stretches(flags & ~across_vf, starts, ends)
            ]
    p = c.pvc_window_beats
    if samples.size >= p:
        v = np.convolve((labels == "V").astype(float), np.ones(p) / p, mode="valid")
        flags = v > c.pvc_burden_above
        episodes += [
            Episode("pvc_burden", a, b)
            for a, b in _stretches(flags, samples[: v.size], samples[p - 1 :])
        ]
    return _merge(episodes)
