"""`ecgstream edge export`: a model artifact as an edge bundle.

    <out>/model.onnx          fp32 network (inputs: window (n, C, W) float32, rr (n, R) float32)
    <out>/model-int8.onnx     the same with int8 weights (dynamic quantisation)
    <out>/preprocess.json     the artifact's preprocessing parameters, classes and version
    <out>/manifest.json       sha256 and size of every file: the runner refuses a bundle that
                              does not match it

The edge runner reads only this directory; it needs no torch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ecgstream.artifact import load_artifact, sha256_file
from ecgstream.errors import ConfigurationError

BUNDLE_FORMAT = 1
OPSET = 18
FILES = ("model.onnx", "model-int8.onnx", "preprocess.json")


def export_bundle(model_dir: Path | None, out: Path) -> dict[str, Any]:
    """Write the bundle of the artifact at `model_dir` (None: the shipped model) into `out`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if (out / "manifest.json").exists():
        raise ConfigurationError(f"{out} already holds a bundle; bundles are immutable")
    artifact = load_artifact(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = artifact.model_config
    window = torch.zeros(2, config.in_channels, artifact.preprocess.beat.window)
    rr = torch.ones(2, config.rr_features)
    batch = torch.export.Dim("n", min=1)
    with warnings.catch_warnings():  # the exporter's own deprecation notices, not ours
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            artifact.model.eval(),
            (window, rr),
            input_names=["window", "rr"],
            output_names=["logits"],
            dynamic_shapes=({0: batch}, {0: batch}),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
        program.save(str(out / "model.onnx"))
    quantize_dynamic(
        str(out / "model.onnx"), str(out / "model-int8.onnx"), weight_type=QuantType.QInt8
    )
    (out / "preprocess.json").write_text(
        json.dumps(
            {
                "version": artifact.version,
                "classes": list(artifact.classes),
                "preprocessing": artifact.preprocess.to_dict(),
            },
            indent=1,
        )
        + "\n"
    )
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": artifact.version,
        "opset": OPSET,
        "files": {
            name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
            for name in FILES
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


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
