"""Per-fold figures and bootstrap intervals over patients around EC57 gross figures."""

from __future__ import annotations

import numpy as np

from ecgstream.ec57 import score_record
from ecgstream.evidence import bootstrap_intervals, crossval_report


def _record(name: str, n: int, s_right: int, s_wrong: int) -> object:
    """n N beats (all right) and s_right + s_wrong S beats (the wrong ones called N)."""
    total = n + s_right + s_wrong
    samples = np.arange(total, dtype=np.int64) * 300 + 120_000  # after the unscored 5 minutes
    ref = np.array(["N"] * n + ["S"] * (s_right + s_wrong))
    det = np.array(["N"] * n + ["S"] * s_right + ["N"] * s_wrong)
    return score_record(name, 360.0, samples, ref, samples, det)


def test_intervals_cover_the_patients_spread_and_not_more() -> None:
    scores = [_record("a", 100, 10, 0), _record("b", 100, 0, 10), _record("c", 100, 5, 5)]
    intervals = bootstrap_intervals(scores, draws=500)
    low, high = intervals["S_se"]["low"], intervals["S_se"]["high"]
    assert 0.0 <= low < 0.5 < high <= 1.0  # gross S Se is 0.5; patients range from 0 to 1
    assert intervals["N_se"]["low"] == intervals["N_se"]["high"] == 1.0  # no spread at all
    assert intervals["F_se"]["draws"] == 0 and intervals["F_se"]["low"] is None  # no F beat


def test_crossval_report_keeps_evaluates_keys_and_adds_folds_and_intervals() -> None:
    folds = [[_record("a", 100, 10, 0)], [_record("b", 100, 0, 10), _record("c", 50, 5, 5)]]
    report = crossval_report(folds, [{"best_epoch": 3}, {"best_epoch": 4}], draws=100)
    assert {"qrs", "classes", "macro_f1", "records", "folds", "intervals"} <= set(report)
    assert set(report["records"]) == {"a", "b", "c"}
    assert report["folds"][0]["records"] == ["a"] and report["folds"][1]["best_epoch"] == 4
    assert report["folds"][0]["classes"]["S"]["se"] == 1.0
    assert report["folds"][1]["classes"]["S"]["se"] == 0.25
    assert report["classes"]["S"]["se"] == 0.5
