"""An edge bundle, read back: checked against its manifest, then one ONNX session (fp32 or int8)
with the preprocessing it was exported with. numpy and onnxruntime only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgstream.digest import sha256_file
from ecgstream.errors import ConfigurationError
from ecgstream.signal.filters import use_designs
from ecgstream.stream import PreprocessConfig

BUNDLE_FORMAT = 1
MODEL_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
FILES = (*MODEL_FILES.values(), "preprocess.json")


def verify_bundle(bundle: Path) -> dict[str, Any]:
    """The manifest, after checking every file against it (raises on any difference)."""
    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        raise ConfigurationError(f"{bundle} has no manifest.json: not an edge bundle")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ConfigurationError(f"{bundle}: bundle format {manifest.get('format')}")
    for name, entry in manifest["files"].items():
        path = bundle / name
        if not path.exists() or sha256_file(path) != entry["sha256"]:
            raise ConfigurationError(f"{path} is missing or does not match the manifest")
    return manifest


@dataclass(frozen=True)
class EdgeModel:
    """The classifier of a bundle: windows (n, C, W) and RR features (n, R) -> probabilities."""

    version: str
    variant: str  # fp32 | int8
    classes: tuple[str, ...]
    preprocess: PreprocessConfig
    session: Any  # onnxruntime.InferenceSession

    def predict_proba(self, windows: np.ndarray, rr: np.ndarray) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        (logits,) = self.session.run(
            None,
            {
                "window": np.ascontiguousarray(windows, np.float32),
                "rr": np.ascontiguousarray(rr, np.float32),
            },
        )
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def load_edge_model(bundle: Path, variant: str = "fp32", threads: int = 1) -> EdgeModel:
    """Verify the bundle and open its model; `threads` 1 keeps a small device's other core free
    for acquisition (and makes the per-beat figures one core's)."""
    import onnxruntime as ort

    if variant not in MODEL_FILES:
        raise ConfigurationError(f"variant {variant!r}: choose one of {sorted(MODEL_FILES)}")
    verify_bundle(bundle)
    meta = json.loads((bundle / "preprocess.json").read_text())
    use_designs(meta.get("designs", {}))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are not the user's
    session = ort.InferenceSession(
        str(bundle / MODEL_FILES[variant]), options, providers=["CPUExecutionProvider"]
    )
    return EdgeModel(
        version=meta["version"],
        variant=variant,
        classes=tuple(meta["classes"]),
        preprocess=PreprocessConfig.from_dict(meta["preprocessing"]),
        session=session,
    )
