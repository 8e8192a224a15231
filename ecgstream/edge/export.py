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

from ecgstream.artifact import load_artifact
from ecgstream.digest import sha256_file
from ecgstream.edge.bundle import BUNDLE_FORMAT, FILES
from ecgstream.errors import ConfigurationError
from ecgstream.signal.filters import bandpass_key, bandpass_sos
from ecgstream.signal.resample import StreamingResampler, resampler_key, resampler_taps
from ecgstream.stream import PreprocessConfig

OPSET = 18
# device rates whose resampling filters ship precomputed (others are designed with scipy.signal
# on the device, which costs it ~80 MB of memory)
DEVICE_RATES = (125.0, 128.0, 200.0, 250.0, 256.0, 300.0, 360.0, 500.0, 512.0, 1000.0)


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
        if program is None:  # only the legacy exporter returns nothing; dynamo=True returns one
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(str(out / "model.onnx"))
    _strip_annotations(out / "model.onnx")
    quantize_dynamic(
        str(out / "model.onnx"), str(out / "model-int8.onnx"), weight_type=QuantType.QInt8
    )
    (out / "preprocess.json").write_text(
        json.dumps(
            {
                "version": artifact.version,
                "classes": list(artifact.classes),
                "preprocessing": artifact.preprocess.to_dict(),
                "designs": filter_designs(artifact.preprocess),
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


def _strip_annotations(path: Path) -> None:
    """Drop the exporter's per-node annotations (source locations, stack traces) and inferred
    shapes: they are most of the file and the runtime needs none of them."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def filter_designs(preprocess: PreprocessConfig) -> dict[str, list[float] | list[list[float]]]:
    """The filter coefficients the stream would design at run time, computed here."""
    band = preprocess.detector.band_hz
    designs = {bandpass_key(preprocess.model_fs, band): bandpass_sos(preprocess.model_fs, band)}
    for rate in DEVICE_RATES:
        resampler = StreamingResampler(rate, preprocess.model_fs)
        if not resampler.identity:
            key = resampler_key(resampler.up, resampler.down)
            designs[key] = resampler_taps(resampler.up, resampler.down)
    return {key: value.tolist() for key, value in designs.items()}
