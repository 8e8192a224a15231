"""The gate's power and false-pass rate, simulated on the committed real cross-validation
scores (two trainings of the shipped recipe on the same folds), and the cross-validated gate
the release run applies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgstream.ec57 import RecordScore
from ecgstream.release.gate import (
    crossval_gate,
    pooled_macro_f1,
    report_confusions,
)
from ecgstream.release.gate_power import ModelPair, fix_errors, pass_rate, population_gain
from ecgstream.release.policy import load_policy
from tests.paths import REPO_ROOT

RESULTS = REPO_ROOT / "docs" / "results"


def _report(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


@pytest.fixture(scope="module")
def retrained() -> ModelPair:
    a, b = _report("crossval_ds1.json"), _report("crossval_ds1_retrained.json")
    records = sorted(a["records"])
    return ModelPair("retrained", report_confusions(a, records), report_confusions(b, records))


def test_fixing_errors_raises_macro_f1_and_keeps_every_reference_beat(
    retrained: ModelPair,
) -> None:
    fixed = fix_errors(retrained.first, 0.1)
    assert np.allclose(fixed.sum(axis=2), retrained.first.sum(axis=2))  # rows keep their beats
    assert pooled_macro_f1(fixed.sum(0)) > pooled_macro_f1(retrained.first.sum(0)) + 0.02
    assert population_gain(retrained, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert population_gain(retrained, -0.1) < 0 < population_gain(retrained, 0.1)
    with pytest.raises(ValueError):
        fix_errors(retrained.first, 1.5)


def test_the_gate_on_all_patients_passes_a_real_gain_and_refuses_equal_or_worse(
    retrained: ModelPair,
) -> None:
    rule = load_policy().against_production
    # a candidate better by ~0.03 macro-F1 on top of real patient-to-patient differences
    assert pass_rate(retrained, rule, 22, 0.1, 200, seed=1) >= 0.75
    assert pass_rate(retrained, rule, 22, 0.0, 200, seed=2) <= 0.09
    assert pass_rate(retrained, rule, 22, -0.05, 200, seed=3) <= 0.02
    # five patients (the old holdout) have far less power for the same gain
    assert pass_rate(retrained, rule, 5, 0.1, 200, seed=1) < 0.65


def _holdout(report: dict, records: list[str]) -> list[RecordScore]:
    return [
        RecordScore(
            record=r,
            n_reference=e["n_reference"],
            n_detected=e["n_detected"],
            qrs_tp=0,
            qrs_fn=0,
            qrs_fp=0,
            confusion=e["confusion"],
            score_classes=not e.get("paced", False),
        )
        for r, e in report["records"].items()
        if r in records
    ]


def _improved(report: dict, share: float) -> dict:
    """The report of a model that calls `share` of each patient's misclassified beats right."""
    from ecgstream.ec57 import DETECTION_COLUMNS, REFERENCE_ROWS

    records = sorted(report["records"])
    fixed = fix_errors(report_confusions(report, records), share)
    out = json.loads(json.dumps(report))
    for name, matrix in zip(records, fixed, strict=True):
        out["records"][name]["confusion"] = {
            row: {c: float(matrix[i, j]) for j, c in enumerate(DETECTION_COLUMNS)}
            for i, row in enumerate(REFERENCE_ROWS)
        }
    return out


def test_the_crossval_gate_compares_patient_by_patient_and_holds_the_holdout_floors() -> None:
    policy = load_policy()
    shipped = _report("crossval_ds1.json")
    holdout = _holdout(shipped, list(policy.splits.holdout))
    better = crossval_gate(_improved(shipped, 0.2), shipped, holdout, policy)
    assert better.passed, better.reasons
    assert better.metrics["bootstrap"]["patients"] == 22
    assert any("cross-validated macro-F1" in r for r in better.reasons)
    assert any(r.startswith("ok: holdout macro-F1") for r in better.reasons)
    assert not crossval_gate(shipped, _improved(shipped, 0.2), holdout, policy).passed
    assert not crossval_gate(shipped, shipped, holdout, policy).passed  # no gain, no pass
    # a candidate whose own artifact fails on the untouched patients is refused
    blind = [
        RecordScore(
            **{
                **s.__dict__,
                "confusion": {
                    row: {c: (sum(cells.values()) if c == "N" else 0) for c in cells}
                    for row, cells in s.confusion.items()
                },
            }
        )
        for s in holdout
    ]
    refused = crossval_gate(_improved(shipped, 0.2), shipped, blind, policy)
    assert not refused.passed
    assert any(r.startswith("FAIL: holdout") for r in refused.reasons)


def test_the_shipped_recipes_real_gain_over_the_old_one_is_not_significant_on_22_patients() -> None:
    """Recorded as it is (decision 99): +0.039 macro-F1, but patient by patient the two
    recipes differ so much that a paired bootstrap cannot tell, and F Se fell 0.26 -> 0.19."""
    policy = load_policy()
    new, old = _report("crossval_ds1.json"), _report("crossval_ds1_rr_template_v1.json")
    decision = crossval_gate(new, old, _holdout(new, list(policy.splits.holdout)), policy)
    assert not decision.passed
    failed = [r for r in decision.reasons if r.startswith("FAIL")]
    assert len(failed) == 2
    assert "F Se" in failed[0] and "paired bootstrap" in failed[1]


def test_models_cross_validated_on_different_folds_are_not_compared() -> None:
    policy = load_policy()
    shipped = _report("crossval_ds1.json")
    other = {**shipped, "folds": [{"records": f["records"][::-1][:-1]} for f in shipped["folds"]]}
    with pytest.raises(ValueError, match="same folds"):
        crossval_gate(shipped, other, [], policy)


def test_gate_power_command_writes_the_study_and_its_plot(tmp_path: Path) -> None:
    out, plot = tmp_path / "power.json", tmp_path / "power.png"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ecgstream")),
            "release",
            "gate-power",
            "--simulations",
            "20",
            "--patients",
            "22",
            "--shares",
            "0",
            "--shares",
            "0.2",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    study = json.loads(out.read_text())
    assert set(study) >= {"method", "rule", "pairs", "points", "summary", "power_required"}
    assert {p["pair"] for p in study["points"]} == {"same recipe retrained", "different recipes"}
    assert study["pairs"]["same recipe retrained"]["patients"] == 22
    assert plot.stat().st_size > 10_000
