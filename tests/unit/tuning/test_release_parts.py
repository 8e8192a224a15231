"""Pure parts of the release pipeline: splits, the search space's mapping onto the model, the
cropped window, the infravalidation comparison, lane isolation, and registry JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgstream.beats import BeatConfig
from ecgstream.dataset import TrainingSet
from ecgstream.io.registry import to_jsonb
from ecgstream.lanes import LANE_NAMES, lane
from ecgstream.model import BeatClassifier, ModelConfig
from ecgstream.release.policy import DEFAULT_POLICY, Splits, load_policy
from ecgstream.release.report import ReleaseReport, StepDecision
from ecgstream.splits import DS1, PACED
from ecgstream.training import EpochTrainer, TrainConfig
from tuning._infravalidation import ExpectedRecord, compare_predictions
from tuning._search import train_config


def test_the_policy_splits_cover_the_local_records_once() -> None:
    splits = load_policy(DEFAULT_POLICY).splits
    labelled = [*splits.train, *splits.validation, *splits.test, *splits.holdout]
    assert sorted(labelled) == sorted(DS1)
    assert sorted(splits.infravalidation) == sorted(PACED)


def test_a_patient_in_two_splits_is_refused() -> None:
    with pytest.raises(ValueError, match="101 is in train and in holdout"):
        Splits(
            train=("101", "106"),
            validation=("108",),
            test=("109",),
            holdout=("101",),
            infravalidation=("102",),
        )


def test_a_cropped_network_sees_the_centre_of_the_streams_window() -> None:
    beat = BeatConfig()
    config = ModelConfig.cropped(192, channels=(4, 8, 8))
    assert config.window == 192
    # the R peak keeps its relative position: 90 of 256 before it, about 67 of 192
    assert config.crop_start == round(64 * beat.before / beat.window)
    torch.manual_seed(0)
    model = BeatClassifier(config).eval()
    full = torch.randn(5, beat.channels, beat.window)
    rr = torch.rand(5, beat.n_features) + 0.5
    cropped = full[..., config.crop_start : config.crop_start + 192]
    with torch.no_grad():
        assert torch.equal(model(full, rr), model(cropped, rr))
    with pytest.raises(ValueError):
        ModelConfig.cropped(300)


def test_trial_parameters_become_the_training_recipe() -> None:
    params = {
        "width": 16,
        "kernel_size": 9,
        "hidden": 32,
        "dropout": 0.25,
        "window": 224,
        "learning_rate": 1e-3,
        "weight_decay": 1e-5,
        "class_weight_power": 0.5,
    }
    config = train_config(params, epochs=7, seed=3, threads=1)
    assert config.model.channels == (16, 32, 32)
    assert config.model.window == 224 and config.model.kernel_size == 9
    assert (config.epochs, config.seed, config.class_weight_power) == (7, 3, 0.5)


def _expected(samples: list[int], n: int = 36_000) -> ExpectedRecord:
    proba = np.tile(np.array([[0.9, 0.05, 0.03, 0.02]], np.float32), (len(samples), 1))
    return ExpectedRecord(np.array(samples), proba, n_samples=n, fs=360.0)


def test_serving_equal_to_offline_passes_and_tail_beats_are_not_required() -> None:
    expected = _expected([1000, 2000, 35_500])  # the last is within TAIL_S of the end
    served = compare_predictions(
        expected, np.array([1000, 2000]), expected.probabilities[:2] + 1e-6, tolerance=1e-4
    )
    assert served["missing"] == served["extra"] == 0
    assert served["within_tolerance"] and served["label_changes"] == 0


def test_a_moved_beat_and_changed_probabilities_are_reported() -> None:
    expected = _expected([1000, 2000, 3000])
    proba = expected.probabilities.copy()
    proba[1] = [0.2, 0.7, 0.05, 0.05]
    result = compare_predictions(expected, np.array([1000, 2000, 3033]), proba, tolerance=1e-4)
    assert (result["missing"], result["extra"], result["label_changes"]) == (1, 1, 1)
    assert not result["within_tolerance"]
    assert math.isclose(result["max_probability_diff"], 0.7, abs_tol=1e-6)


def test_candidate_lanes_never_touch_productions_outputs() -> None:
    production = lane("production")
    assert production.raises_alarms and production.feeds_monitor
    for name in LANE_NAMES[1:]:
        candidate = lane(name)
        assert not candidate.raises_alarms and not candidate.feeds_monitor
        assert candidate.beats_topic != production.beats_topic
        assert candidate.beats_table != production.beats_table
        assert candidate.consumer_group != production.consumer_group
        assert candidate.serve_app != production.serve_app
        assert candidate.coordinator_name != production.coordinator_name
    # the shadow mirrors the live input; staging reads only its own replays
    assert lane("shadow").samples_topic == production.samples_topic
    assert lane("staging").samples_topic != production.samples_topic
    with pytest.raises(ValueError):
        lane("canary")


def test_undefined_metrics_are_stored_as_null() -> None:
    stored = json.loads(to_jsonb({"S": {"ppv": float("nan"), "se": np.float32(0.5)}}))
    assert stored == {"S": {"ppv": None, "se": 0.5}}


def test_the_report_has_the_contract_shape() -> None:
    report = ReleaseReport("run-1", candidate="cnn-x")
    report.steps.append(StepDecision("search", True, ["4 trials"]))
    report.steps.append(StepDecision("gate", False, ["FAIL: macro-F1"]))
    data = report.to_dict()
    assert [(s["name"], s["decision"]) for s in data["steps"]] == [
        ("search", "pass"),
        ("gate", "fail"),
    ]
    assert data["promoted"] is None and not report.passed


def test_a_trial_resumed_from_its_checkpoint_trains_as_if_never_stopped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def data(n: int) -> TrainingSet:
        return TrainingSet(
            rng.standard_normal((n, 4, 256)).astype(np.float32),
            (rng.random((n, ModelConfig().rr_features)) + 0.5).astype(np.float32),
            rng.integers(0, 4, n),
            np.full(n, "x"),
        )

    train, validation = data(300), data(100)
    config = TrainConfig(epochs=3, threads=1)
    straight = EpochTrainer(train, validation, config)
    for _ in range(3):
        straight.run_epoch()
    interrupted = EpochTrainer(train, validation, config)
    interrupted.run_epoch()
    torch.save(interrupted.state(), tmp_path / "state.pt")
    resumed = EpochTrainer(train, validation, config)
    resumed.load_state(torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=False))
    assert resumed.epoch == 1
    resumed.run_epoch()
    resumed.run_epoch()
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_promotion_needs_the_latest_gate_and_staging_decisions_to_have_passed() -> None:
    from datetime import UTC, datetime

    from ecgstream.io.registry import Decision
    from tuning.promotion import missing_evidence

    def decided(*steps: tuple[str, str]) -> list[Decision]:
        now = datetime.now(UTC)
        return [Decision("run", "v1", step, outcome, [], now) for step, outcome in steps]

    assert missing_evidence([]) == ["gate: never run", "staging: never run"]
    assert missing_evidence(decided(("gate", "pass"))) == ["staging: never run"]
    assert missing_evidence(decided(("gate", "pass"), ("staging", "fail"))) == ["staging: failed"]
    assert missing_evidence(decided(("gate", "pass"), ("staging", "pass"))) == []
    # the latest decision counts: a gate that passed once and failed on a re-run is a failure
    assert missing_evidence(decided(("gate", "pass"), ("staging", "pass"), ("gate", "fail"))) == [
        "gate: failed"
    ]
    assert (
        missing_evidence(
            decided(("gate", "fail"), ("gate", "pass"), ("staging", "pass"), ("override", "pass"))
        )
        == []
    )
