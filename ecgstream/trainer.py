"""From records to a saved model artifact, and patient-wise cross-validation of that recipe."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ecgstream.artifact import (
    ModelArtifact,
    code_version,
    load_artifact,
    reference_statistics,
    save_artifact,
)
from ecgstream.dataset import (
    RecordBeats,
    TrainingSet,
    data_fingerprint,
    record_beats,
    training_set,
)
from ecgstream.ec57 import SePp
from ecgstream.evaluation import RecordResult, evaluate_record
from ecgstream.model import BeatClassifier, count_parameters
from ecgstream.splits import PACED, PatientSplit, holdout_split, patient_folds
from ecgstream.stream import PreprocessConfig
from ecgstream.training import EpochReport, TrainConfig, beat_metrics, train_classifier


@dataclass(frozen=True)
class TrainOutcome:
    version: str
    path: Path
    best_epoch: int
    validation_macro_f1: float


def _sepp(metrics: dict[str, SePp]) -> dict[str, dict[str, float | None]]:
    def clean(v: float) -> float | None:
        return None if v != v else round(v, 4)

    return {k: {"se": clean(v.se), "ppv": clean(v.ppv)} for k, v in metrics.items()}


def train_and_save(
    data_dir: Path,
    records: Sequence[str],
    out_dir: Path,
    config: TrainConfig,
    *,
    validation_fraction: float = 0.25,
    preprocess: PreprocessConfig | None = None,
    on_record: Callable[[str], None] = lambda name: None,
    on_epoch: Callable[[EpochReport], None] = lambda report: None,
) -> TrainOutcome:
    """Train on `records` (paced ones are dropped), early-stopping on a patient-wise validation
    split of them, and write an immutable artifact with reference statistics and a model card."""
    preprocess = preprocess or PreprocessConfig()
    # the network's input channels follow the preprocessing (2 per lead)
    config = replace(config, model=replace(config.model, in_channels=preprocess.beat.channels))
    usable = [r for r in records if r not in PACED]
    split = holdout_split(usable, validation_fraction, seed=config.seed)
    beats: dict[str, RecordBeats] = {}
    for name in usable:
        on_record(name)
        beats[name] = record_beats(data_dir, name, preprocess)
    train = training_set(beats[r] for r in split.train)
    validation = training_set(beats[r] for r in split.validation)
    started = time.monotonic()
    result = train_classifier(train, validation, config, on_epoch=on_epoch)
    seconds = time.monotonic() - started

    version = write_artifact(
        out_dir,
        result.model,
        config,
        preprocess,
        data_dir=data_dir,
        records=usable,
        split=split,
        train=train,
        validation=validation,
        training={
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "seconds": round(seconds, 1),
        },
    )
    best = max(result.history, key=lambda report: report.validation_macro_f1)
    return TrainOutcome(version, out_dir, result.best_epoch, best.validation_macro_f1)


def write_artifact(
    out_dir: Path,
    model: BeatClassifier,
    config: TrainConfig,
    preprocess: PreprocessConfig,
    *,
    data_dir: Path,
    records: Sequence[str],
    split: PatientSplit,
    train: TrainingSet,
    validation: TrainingSet,
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> str:
    """Save a trained model as an immutable artifact: reference statistics for the monitor (from
    the validation patients, whom it did not train on) and a model card with its lineage."""
    probe = ModelArtifact.in_memory(model, preprocess)
    val_proba = probe.predict_proba(validation.windows, validation.rr)
    train_proba = probe.predict_proba(train.windows, train.rr)
    reference = reference_statistics(validation.windows, validation.rr, val_proba, probe.classes)
    train_f1, train_metrics = beat_metrics(train.targets, train_proba.argmax(axis=1))
    val_f1, val_metrics = beat_metrics(validation.targets, val_proba.argmax(axis=1))
    card = {
        "model": "1D-CNN over the beat window (beat, beat minus the patient's typical "
        "beat) joined with RR interval features; AAMI classes N, S, V, F",
        "parameters": count_parameters(model),
        "code_version": code_version(),
        "data": {
            "source": str(data_dir),
            "fingerprint_sha256": data_fingerprint(data_dir, records),
            "train_records": list(split.train),
            "validation_records": list(split.validation),
            "test_records": list(split.test),
            "class_counts": {
                "train": train.class_counts(),
                "validation": validation.class_counts(),
            },
        },
        "hyperparameters": config.to_dict(),
        "training": training,
        "metrics": {
            "note": "train/validation: beat-level on detected beats matched to reference beats; "
            "test/holdout: EC57 gross figures through the streaming path",
            "train": {"macro_f1": round(train_f1, 4), "classes": _sepp(train_metrics)},
            "validation": {"macro_f1": round(val_f1, 4), "classes": _sepp(val_metrics)},
            **(metrics or {}),
        },
    }
    model.eval()
    return save_artifact(out_dir, model, preprocess, reference, card)


def cross_validate(
    data_dir: Path,
    records: Sequence[str],
    folds: int,
    config: TrainConfig,
    *,
    on_fold: Callable[[int, tuple[str, ...]], None] = lambda fold, held_out: None,
    on_record: Callable[[RecordResult], None] = lambda result: None,
) -> list[RecordResult]:
    """Leave-patients-out: train on k-1 folds, evaluate the held-out fold's records through the
    full streaming path; every record is scored by a model that never saw its patient."""
    usable = [r for r in records if r not in PACED]
    results: list[RecordResult] = []
    for fold, held_out in enumerate(patient_folds(usable, folds, seed=config.seed)):
        on_fold(fold, held_out)
        training = [r for r in usable if r not in held_out]
        with tempfile.TemporaryDirectory(prefix="ecgstream-cv-") as tmp:
            train_and_save(data_dir, training, Path(tmp) / "model", config)
            model = load_artifact(Path(tmp) / "model")
            for name in held_out:
                result = evaluate_record(model, data_dir, name)
                on_record(result)
                results.append(result)
    return results
