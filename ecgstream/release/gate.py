"""The gate: is a candidate model good enough to be staged?

Against production, the candidate must beat its macro-F1 by the policy's margin, lose no more
than a tolerance on any class's Se and +P, and the improvement must be significant in a paired
bootstrap over *patients* (beats of one patient are not independent, so resampling beats would
overstate the evidence). `compare` is that rule on per-patient confusion matrices; the release
run applies it to both models' cross-validated evidence on all DS1 patients (`crossval_gate`,
decision 99), `ecgstream release gate` to two artifacts scored on given records
(`holdout_gate`), and `gate_power` simulates it. With no production model, absolute thresholds
apply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecgstream.ec57 import (
    DETECTION_COLUMNS,
    REFERENCE_ROWS,
    SCORED_CLASSES,
    RecordScore,
    class_metrics,
    macro_f1,
)
from ecgstream.release.policy import AgainstProduction, FirstModel, ReleasePolicy
from ecgstream.release.report import StepDecision

_Q = REFERENCE_ROWS.index("Q")
_CELLS = [(REFERENCE_ROWS.index(c), DETECTION_COLUMNS.index(c)) for c in SCORED_CLASSES]


def score_confusions(scores: Sequence[RecordScore]) -> np.ndarray:
    """(records, rows, columns) counts of the class-scored records."""
    return np.array(
        [
            [[s.confusion[r][c] for c in DETECTION_COLUMNS] for r in REFERENCE_ROWS]
            for s in scores
            if s.score_classes
        ],
        dtype=float,
    ).reshape(-1, len(REFERENCE_ROWS), len(DETECTION_COLUMNS))


def report_confusions(report: Mapping[str, Any], records: Sequence[str]) -> np.ndarray:
    """The same counts from an `evaluate`/`crossval` report's per-record `confusion`."""
    rows = []
    for name in records:
        entry = report["records"].get(name) or {}
        confusion = entry.get("confusion")
        if confusion is None:
            raise ValueError(f"the evidence has no confusion matrix for record {name}")
        rows.append(
            [[confusion.get(r, {}).get(c, 0) for c in DETECTION_COLUMNS] for r in REFERENCE_ROWS]
        )
    return np.array(rows, dtype=float).reshape(-1, len(REFERENCE_ROWS), len(DETECTION_COLUMNS))


def class_figures(pooled: np.ndarray) -> np.ndarray:
    """Se and +P of N, S, V, F from pooled matrices (..., rows, columns): (..., 4, 2), NaN
    where undefined; +P leaves out the Q row, as ec57.class_metrics does."""
    out = []
    for i, j in _CELLS:
        tp = pooled[..., i, j]
        row = pooled[..., i, :].sum(axis=-1)
        column = pooled[..., :, j].sum(axis=-1) - pooled[..., _Q, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.stack([tp / row, tp / column], axis=-1))
    return np.stack(out, axis=-2)


def pooled_macro_f1(pooled: np.ndarray) -> np.ndarray:
    """Macro-F1 of pooled matrices (..., rows, columns), as ec57.macro_f1 computes it (an
    undefined class counts as 0)."""
    figures = class_figures(pooled)
    se, pp = figures[..., 0], figures[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where((se + pp) > 0, 2 * se * pp / (se + pp), 0.0)
    return np.nan_to_num(f1).mean(axis=-1)


def bootstrap_gains(
    candidate: np.ndarray, production: np.ndarray, samples: int, seed: int
) -> np.ndarray:
    """Macro-F1 gains over `samples` resamples of the patients (with replacement), paired:
    one resample draws the same patients for both models."""
    n = candidate.shape[0]
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=samples)
    weights = weights.astype(float)
    return pooled_macro_f1(np.einsum("bn,nij->bij", weights, candidate)) - pooled_macro_f1(
        np.einsum("bn,nij->bij", weights, production)
    )


def paired_bootstrap(
    candidate: Sequence[RecordScore], production: Sequence[RecordScore], samples: int, seed: int
) -> tuple[float, float, float]:
    """(share of resamples where the candidate's macro-F1 is not higher, 2.5 % and 97.5 %
    quantiles of the gain)."""
    gains = bootstrap_gains(
        score_confusions(candidate), score_confusions(production), samples, seed
    )
    low, high = np.quantile(gains, [0.025, 0.975])
    return float(np.mean(gains <= 0)), float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    passed: bool
    reasons: list[str]
    metrics: dict[str, Any]


def compare(candidate: np.ndarray, production: np.ndarray, rule: AgainstProduction) -> Comparison:
    """The rule against production on paired per-patient matrices (patients, rows, columns)."""
    if candidate.shape != production.shape:
        raise ValueError("candidate and production must be scored on the same patients")
    reasons: list[str] = []
    passed = True

    def check(ok: bool, text: str) -> None:
        nonlocal passed
        passed = passed and ok
        reasons.append(f"{'ok' if ok else 'FAIL'}: {text}")

    mine, theirs = candidate.sum(axis=0), production.sum(axis=0)
    f1_mine, f1_theirs = float(pooled_macro_f1(mine)), float(pooled_macro_f1(theirs))
    gain = f1_mine - f1_theirs
    check(
        gain >= rule.margin,
        f"macro-F1 {f1_mine:.3f} vs production {f1_theirs:.3f}: gain {gain:+.3f}, "
        f"required >= {rule.margin:.3f}",
    )
    now, before = class_figures(mine), class_figures(theirs)
    for k, c in enumerate(SCORED_CLASSES):
        for m, label in enumerate(("Se", "+P")):
            if math.isnan(before[k, m]):
                continue  # production had no such beats to compare with
            value = 0.0 if math.isnan(now[k, m]) else float(now[k, m])
            drop = float(before[k, m]) - value
            check(
                drop <= rule.class_tolerance,
                f"{c} {label} {value:.3f} vs {before[k, m]:.3f}: drop {max(drop, 0):.3f}, "
                f"allowed <= {rule.class_tolerance:.3f}",
            )
    gains = bootstrap_gains(candidate, production, rule.bootstrap_samples, rule.bootstrap_seed)
    p_not_better = float(np.mean(gains <= 0))
    low, high = (float(q) for q in np.quantile(gains, [0.025, 0.975]))
    check(
        p_not_better < rule.significance,
        f"paired bootstrap over {candidate.shape[0]} patients: P(not better) "
        f"{p_not_better:.3f}, required < {rule.significance:.3f} (95 % CI of the gain "
        f"{low:+.3f}..{high:+.3f})",
    )
    metrics = {
        "bootstrap": {
            "p_not_better": p_not_better,
            "macro_f1_diff_95ci": [round(low, 4), round(high, 4)],
            "patients": int(candidate.shape[0]),
        }
    }
    return Comparison(passed, reasons, metrics)


def _summary(scores: Sequence[RecordScore]) -> dict[str, Any]:
    classes = class_metrics(scores)
    return {
        "macro_f1": round(macro_f1(classes), 4),
        "classes": {c: {"se": m.se, "ppv": m.ppv} for c, m in classes.items()},
    }


def _floors(mine: dict[str, Any], floors: FirstModel, where: str) -> tuple[bool, list[str]]:
    """The policy's absolute thresholds (`[first_model]`) on one model's summary."""
    reasons, passed = [], True
    ok = mine["macro_f1"] >= floors.macro_f1
    passed &= ok
    reasons.append(
        f"{'ok' if ok else 'FAIL'}: {where}macro-F1 {mine['macro_f1']:.3f}, required >= "
        f"{floors.macro_f1:.3f}"
    )
    for name, limits in (("se", floors.sensitivity), ("ppv", floors.positive_predictivity)):
        for c, limit in limits.items():
            value = mine["classes"][c][name]
            ok = not math.isnan(value) and value >= limit
            passed &= ok
            reasons.append(
                f"{'ok' if ok else 'FAIL'}: {where}{c} {name} {value:.3f}, required >= {limit:.3f}"
            )
    return passed, reasons


def holdout_gate(
    candidate: Sequence[RecordScore],
    production: Sequence[RecordScore] | None,
    policy: ReleasePolicy,
) -> StepDecision:
    """Both artifacts scored on the same records; none for production: the floors."""
    mine = _summary(candidate)
    metrics: dict[str, Any] = {"candidate": mine}
    if production is None:
        passed, reasons = _floors(mine, policy.first_model, "")
        reasons[0] += " (no production model)"
        return StepDecision("gate", passed, reasons, metrics)
    if sorted(s.record for s in candidate) != sorted(s.record for s in production):
        raise ValueError("candidate and production must be scored on the same holdout records")
    result = compare(
        score_confusions(candidate), score_confusions(production), policy.against_production
    )
    metrics["production"] = _summary(production)
    return StepDecision("gate", result.passed, result.reasons, {**metrics, **result.metrics})


def _cv_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    return {"macro_f1": report["macro_f1"], "classes": report["classes"]}


def same_folds(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Were both reports cross-validated on the same patient folds? (False if one says not.)"""

    def folds(report: Mapping[str, Any]) -> list[list[str]]:
        return sorted(
            sorted(f["records"] if isinstance(f, dict) else f) for f in report.get("folds", [])
        )

    return bool(folds(a)) and folds(a) == folds(b)


def crossval_gate(
    candidate_cv: Mapping[str, Any],
    production_cv: Mapping[str, Any],
    holdout: Sequence[RecordScore],
    policy: ReleasePolicy,
) -> StepDecision:
    """The release run's gate (decision 99): the candidate's and production's cross-validated
    evidence (crossval reports on the same patient folds: every patient scored by a model that
    never saw it) compared patient by patient with `compare`; and the candidate artifact itself
    held to the absolute floors on the holdout patients, which nothing else used."""
    if not same_folds(candidate_cv, production_cv):
        raise ValueError("candidate and production were not cross-validated on the same folds")
    records = sorted(
        r for r, entry in production_cv["records"].items() if entry.get("confusion") is not None
    )
    result = compare(
        report_confusions(candidate_cv, records),
        report_confusions(production_cv, records),
        policy.against_production,
    )
    reasons = [r.replace(": ", ": cross-validated ", 1) for r in result.reasons]
    on_holdout = _summary(holdout)
    floors_ok, floor_reasons = _floors(on_holdout, policy.first_model, "holdout ")
    metrics = {
        "candidate": _cv_summary(candidate_cv),
        "production": _cv_summary(production_cv),
        "evidence": "crossval",
        "crossval_records": records,
        "holdout": on_holdout,
        **result.metrics,
    }
    return StepDecision("gate", result.passed and floors_ok, reasons + floor_reasons, metrics)
