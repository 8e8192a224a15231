"""Model artifacts: a directory that holds everything needed to reproduce the model's outputs.

    <dir>/model.pt          weights (torch state dict)
    <dir>/artifact.json     version, classes, architecture, preprocessing parameters,
                            reference statistics (for drift monitoring), file checksums
    <dir>/model_card.json   data fingerprint, code version, hyperparameters, metrics per split

Artifacts are immutable: `load_artifact` verifies the weights against the recorded checksum.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgstream.aami import MODEL_CLASSES
from ecgstream.beats import RR_FEATURES
from ecgstream.digest import sha256_file
from ecgstream.errors import ConfigurationError
from ecgstream.model import BeatClassifier, ModelConfig
from ecgstream.stream import PreprocessConfig

FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
QUANTILES = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True, eq=False)
class ModelArtifact:
    path: Path
    version: str
    classes: tuple[str, ...]
    model_config: ModelConfig
    preprocess: PreprocessConfig
    reference: dict[str, Any]
    card: dict[str, Any]
    model: BeatClassifier

    @classmethod
    def in_memory(
        cls, model: BeatClassifier, preprocess: PreprocessConfig, version: str = "unsaved"
    ) -> ModelArtifact:
        """A trained model not saved (yet), to score it exactly as a loaded one."""
        return cls(
            path=Path(),
            version=version,
            classes=MODEL_CLASSES,
            model_config=model.config,
            preprocess=preprocess,
            reference={},
            card={},
            model=model,
        )

    @torch.inference_mode()
    def predict_proba(
        self, windows: np.ndarray, rr: np.ndarray, batch: int = 1024, device: str = "cpu"
    ) -> np.ndarray:
        """Class probabilities, float32 (n, n_classes): the one forward pass of the stream's
        Serve replicas (passes of `classifier.forward_batch_beats`), `evaluate`, training's
        checks and the benches (passes of `batch` beats)."""
        if len(windows) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        out = []
        for begin in range(0, len(windows), batch):
            w = torch.from_numpy(np.ascontiguousarray(windows[begin : begin + batch]))
            r = torch.from_numpy(np.ascontiguousarray(rr[begin : begin + batch]))
            logits = self.model(w.to(device), r.to(device))
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def predict(self, windows: np.ndarray, rr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels "<U1", probabilities)."""
        proba = self.predict_proba(windows, rr)
        labels = (
            np.array(self.classes, dtype="<U1")[proba.argmax(axis=1)]
            if len(proba)
            else (np.zeros(0, dtype="<U1"))
        )
        return labels, proba


def code_version() -> str:
    """The git commit of the code that produced an artifact ("unknown" outside a checkout)."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def reference_statistics(
    windows: np.ndarray, rr: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]
) -> dict[str, Any]:
    """Distributions the monitor compares live data with: features overall and per predicted
    class (so a change in the beat mix is not mistaken for data drift), and the prediction mix."""
    predicted = proba.argmax(axis=1)
    summaries = _summary_features(windows, rr)

    def quantiles(values: np.ndarray) -> list[float]:
        return np.quantile(values, QUANTILES).round(6).tolist() if values.size else []

    per_class = {}
    for index, name in enumerate(classes):
        mask = predicted == index
        per_class[name] = {
            "count": int(mask.sum()),
            "features": {k: quantiles(v[mask]) for k, v in summaries.items()},
        }
    entropy = -(proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(axis=1)
    return {
        "n_beats": len(proba),
        "quantile_levels": QUANTILES.round(3).tolist(),
        "features": {k: quantiles(v) for k, v in summaries.items()},
        "per_predicted_class": per_class,
        "class_mix": {
            name: float((predicted == i).mean()) if len(proba) else 0.0
            for i, name in enumerate(classes)
        },
        "mean_confidence": float(proba.max(axis=1).mean()) if len(proba) else 0.0,
        "mean_entropy": float(entropy.mean()) if len(proba) else 0.0,
    }


def _summary_features(windows: np.ndarray, rr: np.ndarray) -> dict[str, np.ndarray]:
    features = {name: rr[:, i] for i, name in enumerate(RR_FEATURES)}
    features["beat_peak_to_peak"] = windows[:, 0].max(axis=1) - windows[:, 0].min(axis=1)
    features["template_deviation"] = np.sqrt((windows[:, 1] ** 2).mean(axis=1))
    return features


def save_artifact(
    path: Path,
    model: BeatClassifier,
    preprocess: PreprocessConfig,
    reference: dict[str, Any],
    card: dict[str, Any],
) -> str:
    """Write a new artifact directory; returns its version. Refuses to overwrite one."""
    if (path / "artifact.json").exists():
        raise ConfigurationError(f"{path} already holds an artifact; artifacts are immutable")
    path.mkdir(parents=True, exist_ok=True)
    weights = path / "model.pt"
    torch.save(model.state_dict(), weights)
    digest = sha256_file(weights)
    version = f"cnn-{digest[:12]}"
    manifest = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "classes": list(MODEL_CLASSES),
        "model": model.config.to_dict(),
        "preprocessing": preprocess.to_dict(),
        "reference": reference,
        "files": {"model.pt": digest},
    }
    (path / "artifact.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (path / "model_card.json").write_text(json.dumps({"version": version, **card}, indent=1) + "\n")
    return version


def load_artifact(path: Path | None = None) -> ModelArtifact:
    path = path or DEFAULT_MODEL_DIR
    manifest_path = path / "artifact.json"
    if not manifest_path.exists():
        raise ConfigurationError(f"no model artifact at {path} (missing artifact.json)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigurationError(f"{path}: artifact format {manifest.get('format_version')}")
    weights = path / "model.pt"
    if sha256_file(weights) != manifest["files"]["model.pt"]:
        raise ConfigurationError(f"{weights} does not match its recorded checksum")
    config = ModelConfig.from_dict(manifest["model"])
    model = BeatClassifier(config)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    card_path = path / "model_card.json"
    return ModelArtifact(
        path=path,
        version=manifest["version"],
        classes=tuple(manifest["classes"]),
        model_config=config,
        preprocess=PreprocessConfig.from_dict(manifest["preprocessing"]),
        reference=manifest["reference"],
        card=json.loads(card_path.read_text()) if card_path.exists() else {},
        model=model,
    )
