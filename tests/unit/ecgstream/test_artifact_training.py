"""Artifacts round-trip and are immutable; training is deterministic under a seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgstream.artifact import load_artifact, reference_statistics, save_artifact
from ecgstream.dataset import record_beats, training_set
from ecgstream.errors import ConfigurationError
from ecgstream.model import (
    BeatClassifier,
    ModelConfig,
    combine,
    feature_network_config,
    standalone_config,
)
from ecgstream.stream import PreprocessConfig
from ecgstream.training import TrainConfig, train_classifier


@pytest.fixture(scope="module")
def small_sets(mitdb_dir: Path) -> tuple:
    config = PreprocessConfig()
    beats = {r: record_beats(mitdb_dir, r, config) for r in ("119", "106")}
    # a quick model: the first 1500 beats of 119 to train, 106 to validate
    train = training_set([beats["119"]])
    cut = slice(0, 1500)
    train = type(train)(train.windows[cut], train.rr[cut], train.targets[cut], train.records[cut])
    return train, training_set([beats["106"]])


def _train(sets: tuple, seed: int) -> BeatClassifier:
    train, validation = sets
    config = TrainConfig(epochs=2, seed=seed, threads=1)
    return train_classifier(train, validation, config).model


def test_training_is_deterministic_under_a_seed(small_sets: tuple) -> None:
    a = _train(small_sets, seed=3).state_dict()
    b = _train(small_sets, seed=3).state_dict()
    c = _train(small_sets, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_set_labels_come_from_matched_reference_beats(small_sets: tuple) -> None:
    train, validation = small_sets
    assert set(np.unique(train.records)) == {"119"}
    counts = validation.class_counts()
    assert counts["V"] > 400 and counts["N"] > 1400  # record 106: ~520 V, ~1500 N beats


def test_artifact_round_trip(tmp_path: Path, small_sets: tuple) -> None:
    _, validation = small_sets
    model = _train(small_sets, seed=0)
    proba = torch.softmax(
        model(torch.from_numpy(validation.windows), torch.from_numpy(validation.rr)), 1
    ).detach()
    reference = reference_statistics(
        validation.windows, validation.rr, proba.numpy(), ("N", "S", "V", "F")
    )
    version = save_artifact(tmp_path / "m", model, PreprocessConfig(), reference, {"k": 1})
    loaded = load_artifact(tmp_path / "m")
    assert loaded.version == version
    assert loaded.classes == ("N", "S", "V", "F")
    assert loaded.preprocess == PreprocessConfig()
    assert loaded.card["k"] == 1
    assert set(loaded.reference["per_predicted_class"]) == {"N", "S", "V", "F"}
    np.testing.assert_allclose(
        loaded.predict_proba(validation.windows, validation.rr), proba.numpy(), atol=1e-6
    )
    json.loads((tmp_path / "m" / "artifact.json").read_text())  # plain JSON, no NaN

    with pytest.raises(ConfigurationError, match="immutable"):
        save_artifact(tmp_path / "m", model, PreprocessConfig(), reference, {})
    weights = tmp_path / "m" / "model.pt"
    weights.write_bytes(weights.read_bytes() + b"tampered")
    with pytest.raises(ConfigurationError, match="checksum"):
        load_artifact(tmp_path / "m")


def test_model_shapes() -> None:
    config = ModelConfig()
    model = BeatClassifier(config)
    logits = model(torch.zeros(3, config.in_channels, 256), torch.ones(3, config.rr_features))
    assert logits.shape == (3, 4)


def _combined_model(gate: int | None = None) -> BeatClassifier:
    config = ModelConfig(window_channels=2, feature_networks=3, irregular_rhythm_feature=gate)
    torch.manual_seed(0)
    main = BeatClassifier(standalone_config(config))
    networks = [BeatClassifier(feature_network_config(config)) for _ in range(3)]
    return combine(main, networks, config)


def test_combined_model_takes_s_from_the_feature_networks() -> None:
    model = _combined_model()
    config = model.config
    window = torch.randn(64, config.in_channels, 256)
    rr = torch.rand(64, config.rr_features) + 0.5
    with torch.inference_mode():
        probabilities = torch.softmax(model(window, rr), 1)
        rhythm = torch.stack([torch.softmax(n(window, rr), 1) for n in model.feature_networks])
        alone = torch.softmax(model._logits(window, rr), 1)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(64))
    torch.testing.assert_close(probabilities[:, 1], rhythm.mean(0)[:, 1])
    # the rest is shared: changing the CNN moves N/V/F, not S
    assert not torch.allclose(probabilities[:, [0, 2, 3]], rhythm.mean(0)[:, [0, 2, 3]])
    assert not torch.allclose(probabilities[:, [0, 2, 3]], alone[:, [0, 2, 3]])
    # the CNN sees only the first two window channels (the detection lead)
    changed = window.clone()
    changed[:, 2:] = torch.randn(64, config.in_channels - 2, 256)
    with torch.inference_mode():
        torch.testing.assert_close(model(changed, rr), model(window, rr))


def test_no_s_call_in_an_irregular_rhythm() -> None:
    index = 12
    model = _combined_model(gate=index)
    config = model.config
    window = torch.randn(32, config.in_channels, 256)
    rr = torch.rand(32, config.rr_features) + 0.5
    rr[:, index] = torch.tensor([0.05, 0.5] * 16)
    with torch.inference_mode():
        gated = torch.softmax(model(window, rr), 1)
        plain = torch.softmax(_combined_model()(window, rr), 1)
    irregular = rr[:, index] > config.irregular_rhythm_threshold
    assert torch.all(gated[irregular, 1] < 1e-6)
    torch.testing.assert_close(gated[irregular, 0], plain[irregular, 0] + plain[irregular, 1])
    torch.testing.assert_close(gated[~irregular], plain[~irregular])
    model.train()  # the gate is a decision rule: training sees the networks' own outputs
    assert not torch.allclose(
        torch.softmax(model(window, rr), 1)[irregular, 1], gated[irregular, 1]
    )
