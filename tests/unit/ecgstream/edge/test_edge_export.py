"""The edge bundle: ONNX models that give the shipped model's answers on real beats, an int8
variant small enough for a microcontroller-class device, and a manifest that catches tampering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ecgstream.artifact import load_artifact
from ecgstream.dataset import record_beats
from ecgstream.edge.bundle import verify_bundle
from ecgstream.edge.export import export_bundle
from ecgstream.errors import ConfigurationError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edge") / "bundle"
    export_bundle(None, out)
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_bundle_answers_like_the_model_on_real_beats(bundle: Path, mitdb_dir: Path) -> None:
    model = load_artifact()
    beats = [record_beats(mitdb_dir, r, model.preprocess) for r in ("119", "208", "209")]
    windows = np.concatenate([b.windows for b in beats])
    rr = np.concatenate([b.rr for b in beats])
    reference = model.predict_proba(windows, rr)
    agreement = {}
    for name in ("model.onnx", "model-int8.onnx"):
        session = ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
        proba = _softmax(session.run(None, {"window": windows, "rr": rr})[0])
        agreement[name] = float((proba.argmax(axis=1) == reference.argmax(axis=1)).mean())
        if name == "model.onnx":
            assert np.abs(proba - reference).max() < 1e-4
    assert len(windows) > 7000
    assert agreement["model.onnx"] >= 0.999
    assert agreement["model-int8.onnx"] >= 0.97, agreement


def test_the_int8_model_is_small_and_the_manifest_checks_every_file(bundle: Path) -> None:
    manifest = verify_bundle(bundle)
    assert manifest["version"] == load_artifact().version
    assert manifest["files"]["model-int8.onnx"]["bytes"] <= 64 * 1024
    assert manifest["files"]["model-int8.onnx"]["bytes"] < manifest["files"]["model.onnx"]["bytes"]


def test_a_changed_file_or_a_second_export_is_refused(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="already holds a bundle"):
        export_bundle(None, bundle)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in bundle.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "preprocess.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="does not match"):
        verify_bundle(copy)
