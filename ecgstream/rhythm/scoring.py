"""How right the alarms are: episode sensitivity, alarm positive predictivity, time to alarm.

- An alarm is *true* if the stream raised it (its `raised_sample`) within [start - 2 s,
  end + 10 s] of a reference episode of its kind; otherwise it is a false alarm.
- An episode is *detected* if a true alarm matched it; an AF episode also if a detected AF
  episode overlaps it (EC57 scores AF by overlap, and one AF alarm rightly spans many short
  reference episodes that VT interrupts).
- Delay: from the episode's start to the position at which its first alarm was raised.
- AF also by duration (EC57): the share of reference AF time inside detected AF, and of
  detected AF time inside reference AF.
- Inhibition: the technical alarms, the time the signal was judged unanalysable, the arrhythmia
  alarms that were inhibited, and the reference episodes that overlap an inhibition (a false
  technical alarm silences real ones, so those are counted, whichever way they were scored).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ecgstream.alarms import CLINICAL_KINDS, Alarm
from ecgstream.rhythm.reference import Episode

if TYPE_CHECKING:
    from rich.table import Table

BEFORE_S = 2.0
AFTER_S = 10.0


@dataclass
class KindCounts:
    episodes: int = 0
    detected: int = 0
    alarms: int = 0
    true_alarms: int = 0
    delays_s: list[float] = field(default_factory=list)


@dataclass
class AlarmScore:
    """One record's (or, merged, many records') alarm figures."""

    seconds: float = 0.0
    kinds: dict[str, KindCounts] = field(
        default_factory=lambda: {k: KindCounts() for k in CLINICAL_KINDS}
    )
    af_reference: int = 0  # AF episodes
    af_reference_detected: int = 0
    af_detected: int = 0  # detected AF episodes
    af_detected_true: int = 0
    af_reference_s: float = 0.0
    af_detected_s: float = 0.0
    af_overlap_s: float = 0.0
    technical_alarms: int = 0
    inhibited_alarms: int = 0
    inhibited_s: float = 0.0
    episodes_in_inhibition: int = 0

    def merge(self, other: AlarmScore) -> AlarmScore:
        out = AlarmScore(seconds=self.seconds + other.seconds)
        for kind in CLINICAL_KINDS:
            a, b = self.kinds[kind], other.kinds[kind]
            out.kinds[kind] = KindCounts(
                a.episodes + b.episodes,
                a.detected + b.detected,
                a.alarms + b.alarms,
                a.true_alarms + b.true_alarms,
                a.delays_s + b.delays_s,
            )
        for name in (
            "af_reference",
            "af_reference_detected",
            "af_detected",
            "af_detected_true",
            "af_reference_s",
            "af_detected_s",
            "af_overlap_s",
            "technical_alarms",
            "inhibited_alarms",
            "inhibited_s",
            "episodes_in_inhibition",
        ):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        return out


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def score_alarms(
    reference: Sequence[Episode],
    alarms: Sequence[Alarm],
    af_detected: Sequence[tuple[int, int | None]],
    fs: float,
    n_samples: int,
    inhibitions: Iterable[tuple[int, int | None, str]] = (),
    inhibited: int = 0,
) -> AlarmScore:
    score = AlarmScore(seconds=n_samples / fs)
    quiet = [(s, n_samples if t is None else t) for s, t, _ in inhibitions]
    score.technical_alarms = sum(a.category == "technical" for a in alarms)
    score.inhibited_alarms = inhibited
    score.inhibited_s = sum(b - a for a, b in quiet) / fs
    score.episodes_in_inhibition = sum(
        any(_overlap((e.start, max(e.end, e.start + 1)), q) > 0 for q in quiet) for e in reference
    )
    before, after = round(BEFORE_S * fs), round(AFTER_S * fs)
    clinical = [a for a in alarms if a.category == "clinical"]
    for kind in CLINICAL_KINDS:
        counts = score.kinds[kind]
        episodes = [e for e in reference if e.kind == kind]
        raised = sorted(
            (a.raised_sample if a.raised_sample is not None else a.start_sample)
            for a in clinical
            if a.kind == kind
        )
        counts.episodes, counts.alarms = len(episodes), len(raised)
        counts.true_alarms = sum(
            any(e.start - before <= r <= e.end + after for e in episodes) for r in raised
        )
        for e in episodes:
            matched = [r for r in raised if e.start - before <= r <= e.end + after]
            if matched:
                counts.detected += 1
                counts.delays_s.append(max(0.0, (matched[0] - e.start) / fs))
            elif kind == "afib" and any(
                _overlap((e.start, e.end), (s, n_samples if t is None else t)) > 0
                for s, t in af_detected
            ):
                counts.detected += 1
    detected = [(s, n_samples if t is None else t) for s, t in af_detected]
    truth = [(e.start, e.end) for e in reference if e.kind == "afib"]
    score.af_reference = len(truth)
    score.af_reference_detected = sum(any(_overlap(r, d) for d in detected) for r in truth)
    score.af_detected = len(detected)
    score.af_detected_true = sum(any(_overlap(d, r) for r in truth) for d in detected)
    score.af_reference_s = sum(b - a for a, b in truth) / fs
    score.af_detected_s = sum(b - a for a, b in detected) / fs
    score.af_overlap_s = sum(_overlap(r, d) for r in truth for d in detected) / fs
    return score


def _fraction(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 4)


def alarms_report(scores: Iterable[AlarmScore]) -> dict[str, Any]:
    """The `alarms` key of `ecgstream evaluate`'s JSON (fractions; null where undefined)."""
    total = AlarmScore()
    for score in scores:
        total = total.merge(score)
    hours = total.seconds / 3600.0
    n_alarms = sum(k.alarms for k in total.kinds.values())
    n_true = sum(k.true_alarms for k in total.kinds.values())
    kinds = {}
    for kind, k in total.kinds.items():
        kinds[kind] = {
            "episodes": k.episodes,
            "detected": k.detected,
            "se": _fraction(k.detected, k.episodes),
            "alarms": k.alarms,
            "true_alarms": k.true_alarms,
            "ppv": _fraction(k.true_alarms, k.alarms),
            "delay_s_median": round(float(np.median(k.delays_s)), 2) if k.delays_s else None,
            "delay_s_max": round(float(np.max(k.delays_s)), 2) if k.delays_s else None,
        }
    return {
        "patient_hours": round(hours, 4),
        "alarms_per_hour": _fraction(n_alarms, hours),
        "false_alarms_per_hour": _fraction(n_alarms - n_true, hours),
        "ppv": _fraction(n_true, n_alarms),
        "kinds": kinds,
        "technical": {
            "alarms": total.technical_alarms,
            "alarms_per_hour": _fraction(total.technical_alarms, hours),
            "unanalysable_s": round(total.inhibited_s, 1),
            "inhibited_alarms": total.inhibited_alarms,
            "episodes_in_inhibition": total.episodes_in_inhibition,
        },
        "afib": {
            "episode_se": _fraction(total.af_reference_detected, total.af_reference),
            "episode_ppv": _fraction(total.af_detected_true, total.af_detected),
            "duration_se": _fraction(total.af_overlap_s, total.af_reference_s),
            "duration_ppv": _fraction(total.af_overlap_s, total.af_detected_s),
        },
    }


def alarms_table(report: dict[str, Any], title: str) -> Table:
    """The `alarms` report as a console table."""
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    table = Table(title=title)
    for column in (
        "kind",
        "episodes",
        "detected",
        "Se %",
        "alarms",
        "true",
        "+P %",
        "delay s (median / max)",
    ):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, k in report["kinds"].items():
        table.add_row(
            kind,
            str(k["episodes"]),
            str(k["detected"]),
            pct(k["se"]),
            str(k["alarms"]),
            str(k["true_alarms"]),
            pct(k["ppv"]),
            f"{sec(k['delay_s_median'])} / {sec(k['delay_s_max'])}",
        )
    af, tech = report["afib"], report["technical"]
    table.caption = (
        f"{report['patient_hours']:.2f} patient-hours; {sec(report['alarms_per_hour'])} alarms and "
        f"{sec(report['false_alarms_per_hour'])} false alarms per hour; alarm +P "
        f"{pct(report['ppv'])} %. AF episodes Se/+P {pct(af['episode_se'])}/"
        f"{pct(af['episode_ppv'])} %, AF time Se/+P {pct(af['duration_se'])}/"
        f"{pct(af['duration_ppv'])} %. Technical alarms {tech['alarms']}; unanalysable "
        f"{sec(tech['unanalysable_s'])} s, {tech['inhibited_alarms']} alarms inhibited, "
        f"{tech['episodes_in_inhibition']} reference episodes inside an inhibition"
    )
    return table
