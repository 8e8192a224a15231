"""Edge parity and `ecgstream bench edge`: the edge runner against the server on real records.

The server's answer for a record is the stream's detector (`detect_beats`, 1-second chunks) and
the PyTorch model; the edge's is `EdgeRunner` fed the same record from the numpy WFDB reader,
classified by the bundle's ONNX model (fp32 or int8) on one thread. Both are scored against the
cardiologists' annotations (EC57 matching), so the int8 model's accuracy change is per class.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgstream.artifact import load_artifact
from ecgstream.ec57 import class_metrics, score_record
from ecgstream.edge.bundle import MODEL_FILES, EdgeModel, load_edge_model
from ecgstream.edge.outbox import Outbox
from ecgstream.edge.runner import EdgeRunner
from ecgstream.edge.wfdb_reader import open_wfdb
from ecgstream.records import load_record, load_reference_beats
from ecgstream.stream import PatientStream, choose_leads

CHUNK_S = 1.0
VARIANTS = tuple(MODEL_FILES)  # fp32, int8


@dataclass
class RecordRun:
    samples: np.ndarray
    labels: np.ndarray
    classify_s: float
    process_s: float


def edge_run(model: EdgeModel, data_dir: Path, record: str, outbox: Outbox) -> RecordRun:
    """One record through the edge runner at full speed, 1-second chunks as a device sends."""
    source = open_wfdb(data_dir / record)
    runner = EdgeRunner(model, outbox, f"parity-{record}", "", source.fs, source.lead_names, 0, 0.0)
    step = round(CHUNK_S * source.fs)
    results = []
    started = time.perf_counter()
    for begin in range(0, source.n_samples, step):
        results += runner.push(source.millivolts(begin, begin + step))[0]
    results += runner.finish()[0]
    elapsed = time.perf_counter() - started
    return RecordRun(
        np.array([r.sample for r in results], np.int64),
        np.array([r.label for r in results]),
        runner.stats.classify_s,
        elapsed,
    )


def server_run(data_dir: Path, record: str) -> RecordRun:
    """The stream's detector and the production PyTorch model on one thread, classifying each
    1-second chunk's beats as they come out (what the edge runner does, with torch)."""
    import torch

    torch.set_num_threads(1)
    artifact = load_artifact()
    loaded = load_record(data_dir, record)
    leads = choose_leads(loaded.lead_names, artifact.preprocess)
    x = np.stack([loaded.lead(loaded.lead_names[i]) for i in leads])
    stream = PatientStream(loaded.fs, artifact.preprocess)
    step = round(CHUNK_S * loaded.fs)
    samples: list[int] = []
    labels: list[np.ndarray] = []
    classify_s = 0.0
    chunks = [x[:, b : b + step] for b in range(0, x.shape[1], step)]
    for chunk in [*chunks, None]:
        beats = stream.push(chunk) if chunk is not None else stream.flush()
        if not beats:
            continue
        started = time.perf_counter()
        predicted, _ = artifact.predict(
            np.stack([b.features.window for b in beats]), np.stack([b.features.rr for b in beats])
        )
        classify_s += time.perf_counter() - started
        samples += [b.device_sample for b in beats]
        labels.append(predicted)
    return RecordRun(np.array(samples, np.int64), np.concatenate(labels), classify_s, 0.0)


def edge_parity(
    bundle: Path,
    data_dir: Path,
    records: Sequence[str],
    on_record: Callable[[str], None] = lambda name: None,
) -> dict[str, Any]:
    """Agreement with the server per variant, per-class sensitivity of each against the
    annotations, and the time each took to classify."""
    runs: dict[str, dict[str, RecordRun]] = {v: {} for v in ("server", *VARIANTS)}
    alarm_log = logging.getLogger("ecgstream.edge")
    level = alarm_log.level
    alarm_log.setLevel(logging.ERROR)  # thousands of replayed alarms are not news here
    models = {variant: load_edge_model(bundle, variant) for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="ecgstream-parity-") as tmp:
        for record in records:
            on_record(record)
            runs["server"][record] = server_run(data_dir, record)
            for variant in VARIANTS:
                outbox = Outbox(Path(tmp) / f"{variant}-{record}.sqlite")
                try:
                    runs[variant][record] = edge_run(models[variant], data_dir, record, outbox)
                finally:
                    outbox.close()
    alarm_log.setLevel(level)
    out: dict[str, Any] = {"records": list(records)}
    server = runs["server"]
    n_beats = sum(r.samples.size for r in server.values())
    out["server_beats"] = n_beats
    sensitivity: dict[str, dict[str, float | None]] = {}
    for name, by_record in runs.items():
        scores = []
        for record, run in by_record.items():
            reference = load_reference_beats(data_dir, record)
            fs = open_wfdb(data_dir / record).fs
            scores.append(
                score_record(
                    record, fs, reference.samples, reference.labels, run.samples, run.labels
                )
            )
        sensitivity[name] = {c: m.se for c, m in class_metrics(scores).items()}
        beats = sum(r.samples.size for r in by_record.values())
        out[f"{name}_classify_ms_per_beat"] = round(
            1000 * sum(r.classify_s for r in by_record.values()) / beats, 4
        )
        if name == "server":
            continue
        same_beats = all(np.array_equal(by_record[r].samples, server[r].samples) for r in records)
        agree = sum(int((by_record[r].labels == server[r].labels).sum()) for r in records)
        out[f"same_beats_{name}"] = same_beats
        out[f"agreement_{name}"] = round(agree / n_beats, 5) if same_beats else None
        out[f"{name}_process_ms_per_beat"] = round(
            1000 * sum(r.process_s for r in by_record.values()) / beats, 4
        )
    out["sensitivity"] = sensitivity
    out["int8_sensitivity_change_points"] = {
        c: round(100 * (int8 - fp32), 2)
        for c, fp32 in sensitivity["fp32"].items()
        if fp32 is not None and (int8 := sensitivity["int8"][c]) is not None
    }
    return out


def peak_rss_mb(bundle: Path, variant: str, record: Path) -> float:
    """The runner's peak resident memory, as its own process (what a device would run)."""
    with tempfile.TemporaryDirectory(prefix="ecgstream-rss-") as tmp:
        command = [
            str(Path(sys.executable).with_name("ecgstream-edge")),
            *("run", "--bundle", str(bundle), "--device", "bench-rss"),
            *("--outbox", str(Path(tmp) / "outbox.sqlite"), "--wfdb", str(record)),
            *("--speed", "0"),
            *(["--int8"] if variant == "int8" else []),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def bench_edge(
    bundle: Path,
    data_dir: Path,
    records: Sequence[str],
    on_record: Callable[[str], None] = lambda name: None,
) -> dict[str, Any]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    parity = edge_parity(bundle, data_dir, records, on_record)
    rss = {v: peak_rss_mb(bundle, v, data_dir / "208") for v in VARIANTS}
    server_ms = parity["server_classify_ms_per_beat"]
    return {
        "fp32_ms_per_beat": parity["fp32_classify_ms_per_beat"],
        "int8_ms_per_beat": parity["int8_classify_ms_per_beat"],
        "peak_rss_mb": max(rss.values()),
        "fp32_model_bytes": manifest["files"][MODEL_FILES["fp32"]]["bytes"],
        "int8_model_bytes": manifest["files"][MODEL_FILES["int8"]]["bytes"],
        "agreement_fp32": parity["agreement_fp32"],
        "agreement_int8": parity["agreement_int8"],
        # the baseline, measured in the same run: PyTorch on one thread, the same batches
        "torch_ms_per_beat": server_ms,
        "fp32_vs_torch": round(parity["fp32_classify_ms_per_beat"] / server_ms, 3),
        "int8_vs_torch": round(parity["int8_classify_ms_per_beat"] / server_ms, 3),
        "fp32_process_ms_per_beat": parity["fp32_process_ms_per_beat"],
        "int8_process_ms_per_beat": parity["int8_process_ms_per_beat"],
        "peak_rss_mb_by_variant": rss,
        "int8_sensitivity_change_points": parity["int8_sensitivity_change_points"],
        "sensitivity": parity["sensitivity"],
        "beats": parity["server_beats"],
        "records": parity["records"],
        "model_version": manifest["version"],
    }
