"""Patient-wise evidence around EC57 gross figures: per-fold figures and bootstrap intervals
over patients.

Gross figures pool beats, so a few patients with many ectopic beats decide them; resampling
*patients* (not beats) shows how far another set of patients could move each figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.table import Table

from ecgstream.ec57 import (
    SCORED_CLASSES,
    RecordScore,
    class_metrics,
    evaluation_report,
    macro_f1,
    qrs_metrics,
)


def _figures(scores: Sequence[RecordScore]) -> dict[str, float]:
    """The gross figures as one flat mapping: qrs_se, qrs_ppv, N_se, ..., macro_f1."""
    qrs = qrs_metrics(scores)
    classes = class_metrics(scores)
    out = {"qrs_se": qrs.se, "qrs_ppv": qrs.ppv}
    for name in SCORED_CLASSES:
        out[f"{name}_se"] = classes[name].se
        out[f"{name}_ppv"] = classes[name].ppv
    out["macro_f1"] = macro_f1(classes)
    return out


def bootstrap_intervals(
    scores: Sequence[RecordScore], draws: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float | None]]:
    """Percentile intervals of every gross figure over `draws` resamplings of the patients
    (records drawn with replacement). A draw where a figure is undefined (no beat of the
    class) is left out of that figure's interval."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in _figures(scores)}
    names = list(range(len(scores)))
    for _ in range(draws):
        chosen = [scores[i] for i in rng.choice(names, size=len(names), replace=True)]
        for key, value in _figures(chosen).items():
            if not math.isnan(value):
                samples[key].append(value)
    low, high = (1 - level) / 2, 1 - (1 - level) / 2
    return {
        key: {
            "low": float(np.quantile(values, low)) if values else None,
            "high": float(np.quantile(values, high)) if values else None,
            "draws": len(values),
        }
        for key, values in samples.items()
    }


def crossval_report(
    fold_scores: Sequence[Sequence[RecordScore]],
    fold_notes: Sequence[dict[str, Any]] | None = None,
    draws: int = 2000,
) -> dict[str, Any]:
    """The crossval JSON: `ecgstream evaluate`'s keys over all held-out records (`qrs`,
    `classes`, `macro_f1`, `records`), plus `folds` (each fold's own figures and what was chosen
    inside it) and `intervals` (95 % bootstrap over patients, as fractions)."""
    everything = [score for fold in fold_scores for score in fold]
    report = evaluation_report(everything)
    folds = []
    for index, scores in enumerate(fold_scores):
        own = evaluation_report(list(scores))
        folds.append(
            {
                "records": [s.record for s in scores],
                "qrs": own["qrs"],
                "classes": own["classes"],
                "macro_f1": own["macro_f1"],
                **(fold_notes[index] if fold_notes else {}),
            }
        )
    report["folds"] = folds
    report["intervals"] = bootstrap_intervals(everything, draws=draws)
    return report


def intervals_table(report: dict[str, Any]) -> Table:
    """Each gross figure with its 95 % interval over patients, and each fold's figure."""
    table = Table(title="gross figures, 95 % bootstrap interval over patients, per fold (%)")
    table.add_column("figure")
    table.add_column("gross", justify="right")
    table.add_column("interval", justify="right")
    for index in range(len(report["folds"])):
        table.add_column(f"fold {index + 1}", justify="right")

    def value(entry: dict[str, Any], key: str) -> float | None:
        if key == "macro_f1":
            return entry["macro_f1"]
        head, _, tail = key.partition("_")
        return entry["qrs"][tail] if head == "qrs" else entry["classes"][head][tail]

    def percent(v: float | None, f1: bool) -> str:
        return "-" if v is None else (f"{v:.3f}" if f1 else f"{100 * v:.1f}")

    for key, interval in report["intervals"].items():
        f1 = key == "macro_f1"
        cells = [
            key.replace("_se", " Se").replace("_ppv", " +P"),
            percent(value(report, key), f1),
            f"{percent(interval['low'], f1)} - {percent(interval['high'], f1)}",
        ]
        cells += [percent(value(fold, key), f1) for fold in report["folds"]]
        table.add_row(*cells)
    return table
