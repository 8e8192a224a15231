"""The holdout gate on real EC57 scores: the shipped model evaluated on MIT-BIH records, and
candidates derived from those counts (beats moved between cells of each patient's matrix)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ecgstream.artifact import load_artifact
from ecgstream.ec57 import RecordScore
from ecgstream.evaluation import evaluate_records
from ecgstream.release.gate import holdout_gate
from ecgstream.release.policy import DEFAULT_POLICY, load_policy
from tests.paths import REPO_ROOT

HOLDOUT = ("106", "119", "201", "203", "208", "209", "220", "223")


@pytest.fixture(scope="module")
def production(mitdb_dir: Path) -> list[RecordScore]:
    return [r.score for r in evaluate_records(load_artifact(), mitdb_dir, HOLDOUT)]


def _moved(scores: list[RecordScore], moves: list[tuple[str, str, str, float]]) -> list:
    """A copy where, in every record, `share` of cell (row, from) moves to (row, to)."""
    out = []
    for score in scores:
        confusion = copy.deepcopy(score.confusion)
        for row, source, target, share in moves:
            n = int(confusion[row][source] * share)
            confusion[row][source] -= n
            confusion[row][target] += n
        out.append(RecordScore(**{**score.__dict__, "confusion": confusion}))
    return out


def test_the_shipped_policy_loads() -> None:
    policy = load_policy(DEFAULT_POLICY)
    assert policy.against_production.margin > 0
    assert 0 < policy.against_production.significance < 1


def test_the_first_model_is_judged_on_absolute_thresholds(production: list) -> None:
    decision = holdout_gate(production, None, load_policy())
    assert decision.passed, decision.reasons
    assert any("no production model" in r for r in decision.reasons)
    too_strict = load_policy().model_copy(
        update={"first_model": load_policy().first_model.model_copy(update={"macro_f1": 0.99})}
    )
    assert not holdout_gate(production, None, too_strict).passed


def test_a_clearly_better_candidate_passes(production: list) -> None:
    # half of the missed S beats found and half of the false S calls fixed, in every patient
    better = _moved(production, [("S", "N", "S", 0.5), ("N", "S", "N", 0.5)])
    decision = holdout_gate(better, production, load_policy())
    assert decision.passed, decision.reasons
    assert decision.metrics["bootstrap"]["p_not_better"] < 0.05


def test_a_worse_candidate_and_the_same_model_fail(production: list) -> None:
    worse = _moved(production, [("S", "S", "N", 0.5)])
    decision = holdout_gate(worse, production, load_policy())
    assert not decision.passed
    assert any(r.startswith("FAIL: macro-F1") for r in decision.reasons)
    same = holdout_gate(production, production, load_policy())
    assert not same.passed  # no gain: neither the margin nor significance


def test_better_overall_but_worse_on_v_beats_fails(production: list) -> None:
    candidate = _moved(
        production, [("S", "N", "S", 0.6), ("N", "S", "N", 0.6), ("V", "V", "N", 0.1)]
    )
    decision = holdout_gate(candidate, production, load_policy())
    assert decision.metrics["candidate"]["macro_f1"] > decision.metrics["production"]["macro_f1"]
    assert not decision.passed
    assert any(r.startswith("FAIL: V Se") for r in decision.reasons), decision.reasons


def test_models_scored_on_different_patients_are_refused(production: list) -> None:
    with pytest.raises(ValueError, match="same holdout records"):
        holdout_gate(production[1:], production, load_policy())


def test_release_gate_command_refuses_a_candidate_no_better_than_production(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    out = tmp_path / "gate.json"
    ecgstream = str(Path(sys.executable).with_name("ecgstream"))
    result = subprocess.run(
        [ecgstream, "release", "gate", "--candidate", "models/default", "--production",
         "models/default", "--records", "119", "208", "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    decision = json.loads(out.read_text())
    assert decision["name"] == "holdout_gate" and decision["decision"] == "fail"
    assert any(r.startswith("FAIL: macro-F1") for r in decision["reasons"])
    assert "decision: fail" in result.stdout
