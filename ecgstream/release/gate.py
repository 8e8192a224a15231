"""The holdout gate: is a candidate model good enough to be staged?

Both models are scored (EC57, whole streaming path) on the same holdout patients. Against a
production model the candidate must beat it by the policy's margin on macro-F1, lose no more
than a tolerance on any class's Se and +P, and the improvement must be significant in a paired
bootstrap over *patients* (beats of one patient are not independent, so resampling beats would
overstate the evidence). With no production model, absolute thresholds apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from ecgstream.release.policy import ReleasePolicy
from ecgstream.release.report import StepDecision


def _confusions(scores: Sequence[RecordScore]) -> np.ndarray:
    """(records, rows, columns) counts of the class-scored records."""
    return np.array(
        [
            [[s.confusion[r][c] for c in DETECTION_COLUMNS] for r in REFERENCE_ROWS]
            for s in scores
            if s.score_classes
        ],
        dtype=float,
    ).reshape(-1, len(REFERENCE_ROWS), len(DETECTION_COLUMNS))


def _macro_f1(pooled: np.ndarray) -> np.ndarray:
    """Macro-F1 of pooled matrices (..., rows, columns), as ec57.macro_f1 computes it."""
    q = REFERENCE_ROWS.index("Q")
    f1 = []
    for c in SCORED_CLASSES:
        i, j = REFERENCE_ROWS.index(c), DETECTION_COLUMNS.index(c)
        tp = pooled[..., i, j]
        row = pooled[..., i, :].sum(axis=-1)
        column = pooled[..., :, j].sum(axis=-1) - pooled[..., q, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            se, pp = tp / row, tp / column
            score = np.where((row > 0) & (column > 0) & (se + pp > 0), 2 * se * pp / (se + pp), 0)
        f1.append(np.nan_to_num(score))
    return np.mean(f1, axis=0)


def paired_bootstrap(
    candidate: Sequence[RecordScore], production: Sequence[RecordScore], samples: int, seed: int
) -> tuple[float, float, float]:
    """Resample patients with replacement; returns (share of resamples where the candidate's
    macro-F1 is not higher, 2.5 % and 97.5 % quantiles of the difference)."""
    a, b = _confusions(candidate), _confusions(production)
    rng = np.random.default_rng(seed)
    n = a.shape[0]
    weights = rng.multinomial(n, np.full(n, 1 / n), size=samples).astype(float)  # (B, n)
    diff = _macro_f1(np.einsum("bn,nij->bij", weights, a)) - _macro_f1(
        np.einsum("bn,nij->bij", weights, b)
    )
    low, high = np.quantile(diff, [0.025, 0.975])
    return float(np.mean(diff <= 0)), float(low), float(high)


def _summary(scores: Sequence[RecordScore]) -> dict[str, Any]:
    classes = class_metrics(scores)
    return {
        "macro_f1": round(macro_f1(classes), 4),
        "classes": {c: {"se": m.se, "ppv": m.ppv} for c, m in classes.items()},
    }


def holdout_gate(
    candidate: Sequence[RecordScore],
    production: Sequence[RecordScore] | None,
    policy: ReleasePolicy,
) -> StepDecision:
    mine = _summary(candidate)
    metrics: dict[str, Any] = {"candidate": mine}
    reasons: list[str] = []
    passed = True

    def check(ok: bool, text: str) -> None:
        nonlocal passed
        passed = passed and ok
        reasons.append(f"{'ok' if ok else 'FAIL'}: {text}")

    if production is None:
        floors = policy.first_model
        check(
            mine["macro_f1"] >= floors.macro_f1,
            f"macro-F1 {mine['macro_f1']:.3f}, required >= {floors.macro_f1:.3f} "
            "(no production model)",
        )
        for name, limits in (("se", floors.sensitivity), ("ppv", floors.positive_predictivity)):
            for c, limit in limits.items():
                value = mine["classes"][c][name]
                check(
                    not math.isnan(value) and value >= limit,
                    f"{c} {name} {value:.3f}, required >= {limit:.3f}",
                )
        return StepDecision("gate", passed, reasons, metrics)

    if sorted(s.record for s in candidate) != sorted(s.record for s in production):
        raise ValueError("candidate and production must be scored on the same holdout records")
    rule = policy.against_production
    theirs = _summary(production)
    metrics["production"] = theirs
    gain = mine["macro_f1"] - theirs["macro_f1"]
    check(
        gain >= rule.margin,
        f"macro-F1 {mine['macro_f1']:.3f} vs production {theirs['macro_f1']:.3f}: "
        f"gain {gain:+.3f}, required >= {rule.margin:.3f}",
    )
    for c in SCORED_CLASSES:
        for name, label in (("se", "Se"), ("ppv", "+P")):
            now, before = mine["classes"][c][name], theirs["classes"][c][name]
            if math.isnan(before):
                continue  # production had no such beats to compare with
            drop = before - (0.0 if math.isnan(now) else now)
            check(
                drop <= rule.class_tolerance,
                f"{c} {label} {now:.3f} vs {before:.3f}: drop {max(drop, 0):.3f}, "
                f"allowed <= {rule.class_tolerance:.3f}",
            )
    p_not_better, low, high = paired_bootstrap(
        candidate, production, rule.bootstrap_samples, rule.bootstrap_seed
    )
    metrics["bootstrap"] = {
        "p_not_better": p_not_better,
        "macro_f1_diff_95ci": [round(low, 4), round(high, 4)],
        "patients": len(_confusions(candidate)),
    }
    check(
        p_not_better < rule.significance,
        f"paired bootstrap over patients: P(not better) {p_not_better:.3f}, required < "
        f"{rule.significance:.3f} (95 % CI of the gain {low:+.3f}..{high:+.3f})",
    )
    return StepDecision("gate", passed, reasons, metrics)
