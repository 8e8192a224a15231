"""How often the gate passes: its power and false-pass rate, simulated on real EC57 scores.

The evidence is per-patient confusion matrices of real models on the same patients (two
cross-validations on the same folds). One simulated release draws a set of patients with
replacement (patients are the unit that varies between wards), gives each patient's two real
matrices to candidate and production in a random order (so the two are equally good, and differ
patient by patient as real retrained models do), and then makes the candidate better, or worse,
by a set share: in every patient, that share of each misclassified N/S/V/F beat moves to its
right class (for a worse candidate, production gets the fix). The gate's own rule (`compare`)
then decides. Pass rate against the population gain is the power curve; at gain <= 0 it is the
false-pass rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecgstream.ec57 import DETECTION_COLUMNS, REFERENCE_ROWS, SCORED_CLASSES
from ecgstream.release.gate import compare, pooled_macro_f1
from ecgstream.release.policy import AgainstProduction

_ROWS = [REFERENCE_ROWS.index(c) for c in SCORED_CLASSES]
_COLUMNS = [DETECTION_COLUMNS.index(c) for c in SCORED_CLASSES]


@dataclass(frozen=True, eq=False)
class ModelPair:
    """Two real models' matrices (patients, rows, columns) on the same patients."""

    name: str
    first: np.ndarray
    second: np.ndarray

    def __post_init__(self) -> None:
        if self.first.shape != self.second.shape or self.first.ndim != 3:
            raise ValueError("a pair needs (patients, rows, columns) matrices of equal shape")


def fix_errors(matrices: np.ndarray, share: float) -> np.ndarray:
    """A model better by `share`: in every patient, that share of each N/S/V/F beat called
    another of those classes is called right instead (missed beats stay missed)."""
    if not 0 <= share <= 1:
        raise ValueError("share must be within 0..1")
    fixed = matrices.copy()
    for i, row in enumerate(_ROWS):
        for j, column in enumerate(_COLUMNS):
            if i != j:
                moved = share * matrices[:, row, column]
                fixed[:, row, column] -= moved
                fixed[:, row, _COLUMNS[i]] += moved
    return fixed


def _assign(a: np.ndarray, b: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, production): better by `share` > 0, worse by -`share` < 0."""
    if share >= 0:
        return fix_errors(a, share), b
    return a, fix_errors(b, -share)


def population_gain(pair: ModelPair, share: float) -> float:
    """The candidate's expected macro-F1 gain over all the pair's patients (both orders)."""
    gains = []
    for a, b in ((pair.first, pair.second), (pair.second, pair.first)):
        candidate, production = _assign(a, b, share)
        gains.append(float(pooled_macro_f1(candidate.sum(0)) - pooled_macro_f1(production.sum(0))))
    return float(np.mean(gains))


def pass_rate(
    pair: ModelPair,
    rule: AgainstProduction,
    patients: int,
    share: float,
    simulations: int,
    seed: int,
) -> float:
    """Share of simulated releases (patients drawn with replacement) the gate passes."""
    rng = np.random.default_rng(seed)
    count = pair.first.shape[0]
    passes = 0
    for _ in range(simulations):
        drawn = rng.integers(0, count, size=patients)
        swap = (rng.random(patients) < 0.5)[:, None, None]
        a = np.where(swap, pair.second[drawn], pair.first[drawn])
        b = np.where(swap, pair.first[drawn], pair.second[drawn])
        candidate, production = _assign(a, b, share)
        passes += compare(candidate, production, rule).passed
    return passes / simulations


def power_study(
    pairs: Sequence[ModelPair],
    rule: AgainstProduction,
    patients: Sequence[int],
    shares: Sequence[float],
    simulations: int,
    seed: int = 0,
    on_point: Callable[[dict[str, Any]], None] = lambda point: None,
) -> list[dict[str, Any]]:
    """Pass rates for every pair, number of patients and share."""
    points = []
    for p, pair in enumerate(pairs):
        for n in patients:
            for s, share in enumerate(shares):
                rate = pass_rate(pair, rule, n, share, simulations, seed + 1000 * p + s)
                point = {
                    "pair": pair.name,
                    "patients": n,
                    "share_fixed": share,
                    "macro_f1_gain": round(population_gain(pair, share), 4),
                    "pass_rate": rate,
                    # Monte Carlo standard error of the rate
                    "standard_error": round(float(np.sqrt(rate * (1 - rate) / simulations)), 4),
                    "simulations": simulations,
                }
                on_point(point)
                points.append(point)
    return points


def smallest_gain_with_power(
    points: Sequence[dict[str, Any]], pair: str, patients: int, power: float
) -> float | None:
    """The smallest simulated gain the gate passed at least `power` of the time (and every
    larger one too)."""
    rows = sorted(
        (p for p in points if p["pair"] == pair and p["patients"] == patients),
        key=lambda p: p["macro_f1_gain"],
    )
    found = None
    for row in reversed(rows):
        if row["macro_f1_gain"] <= 0 or row["pass_rate"] < power:
            break
        found = row["macro_f1_gain"]
    return found


def worst_false_pass(points: Sequence[dict[str, Any]], pair: str, patients: int) -> float:
    """The highest pass rate of a candidate equal to or worse than production."""
    return max(
        (
            p["pass_rate"]
            for p in points
            if p["pair"] == pair and p["patients"] == patients and p["share_fixed"] <= 0
        ),
        default=float("nan"),
    )
