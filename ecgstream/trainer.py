"""From records to a saved model artifact, and patient-wise cross-validation of that recipe."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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
    subsample_beats,
    training_set,
)
from ecgstream.ec57 import SePp
from ecgstream.evaluation import RecordResult, evaluate_record
from ecgstream.model import (
    BeatClassifier,
    combine,
    count_parameters,
    feature_network_config,
    standalone_config,
)
from ecgstream.splits import PACED, PatientSplit, holdout_split, patient_folds
from ecgstream.stream import PreprocessConfig
from ecgstream.training import EpochReport, TrainConfig, beat_metrics, train_classifier


@dataclass(frozen=True)
class TrainOutcome:
    version: str
    path: Path
    best_epoch: int
    validation_macro_f1: float
    validation_records: tuple[str, ...] = ()  # of every network


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
    metrics: dict[str, Any] | None = None,
    recipe_name: str | None = None,
    beats_per_record: int = 0,
    loaded: Mapping[str, RecordBeats] | None = None,
) -> TrainOutcome:
    """Train on `records` (paced ones are dropped), early-stopping on a patient-wise validation
    split of them, and write an immutable artifact with reference statistics and a model card.
    `beats_per_record` > 0 trains on a seeded subsample of each record's labelled beats (a small
    budget); `loaded` holds records' beats already computed with `preprocess`."""
    preprocess = preprocess or PreprocessConfig()
    # the network's inputs follow the preprocessing (2 channels per lead, the feature set)
    config = replace(
        config,
        model=replace(
            config.model,
            in_channels=preprocess.beat.channels,
            rr_features=preprocess.beat.n_features,
        ),
    )
    usable = [r for r in records if r not in PACED]
    beats: dict[str, RecordBeats] = {}
    for name in usable:
        on_record(name)
        computed = (loaded or {}).get(name) or record_beats(data_dir, name, preprocess)
        beats[name] = subsample_beats(computed, beats_per_record, config.seed)
    started = time.monotonic()
    # each network early-stops on its own patient-wise validation split
    networks = [standalone_config(config.model)]
    networks += [feature_network_config(config.model)] * config.model.feature_networks
    splits, results = [], []
    for index, network in enumerate(networks):
        seed = config.seed + index
        split = holdout_split(usable, validation_fraction, seed=seed)
        result = train_classifier(
            training_set(beats[r] for r in split.train),
            training_set(beats[r] for r in split.validation),
            replace(config, seed=seed, model=network),
            on_epoch=on_epoch,
        )
        splits.append(split)
        results.append(result)
    seconds = time.monotonic() - started
    model = combine(results[0].model, [r.model for r in results[1:]], config.model)

    split = splits[0]
    version = write_artifact(
        out_dir,
        model,
        config,
        preprocess,
        data_dir=data_dir,
        records=usable,
        split=split,
        train=training_set(beats[r] for r in split.train),
        validation=training_set(beats[r] for r in split.validation),
        training={
            "best_epoch": [r.best_epoch for r in results],
            "epochs_run": [len(r.history) for r in results],
            "validation_records_per_network": [list(s.validation) for s in splits],
            "seconds": round(seconds, 1),
        },
        metrics=metrics,
        recipe=recipe_name,
    )
    best = [max(r.history, key=lambda report: report.validation_macro_f1) for r in results]
    return TrainOutcome(
        version,
        out_dir,
        results[0].best_epoch,
        float(sum(b.validation_macro_f1 for b in best) / len(best)),
        tuple(sorted({r for s in splits for r in s.validation})),
    )


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
    recipe: str | None = None,
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
        "model": _describe(model),
        "recipe": recipe,
        "parameters": count_parameters(model),
        "code_version": code_version(),
        "data": {
            # the data's identity is its fingerprint; where it lay on this machine is not kept
            "source": data_dir.name,
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


def _describe(model: BeatClassifier) -> str:
    config = model.config
    text = (
        "1D-CNN over the beat window (beat, beat minus the patient's typical beat) joined with "
        f"{config.rr_features} RR and patient-relative features"
    )
    if config.feature_networks:
        text += (
            f", combined with {config.feature_networks} feature-only networks that alone give "
            "S's probability"
        )
    if config.irregular_rhythm_feature is not None:
        text += "; no S call in an irregular rhythm"
    return text + "; AAMI classes N, S, V, F"


def cross_validate(
    data_dir: Path,
    records: Sequence[str],
    folds: int,
    config: TrainConfig,
    *,
    on_fold: Callable[[int, tuple[str, ...]], None] = lambda fold, held_out: None,
    on_record: Callable[[RecordResult], None] = lambda result: None,
    preprocess: PreprocessConfig | None = None,
    held_out_folds: Sequence[Sequence[str]] | None = None,
    beats_per_record: int = 0,
) -> CrossValidation:
    """Leave-patients-out: train on k-1 folds, evaluate the held-out fold's records through the
    full streaming path; every record is scored by a model that never saw its patient. Every
    choice (early stopping, decision offsets) is made on validation patients drawn from the
    training folds, never on the held-out fold. `held_out_folds` gives the folds instead of
    `patient_folds(records, folds, seed)`: the release gate compares two models on the same
    folds. Each record's beats are computed once for all folds."""
    usable = [r for r in records if r not in PACED]
    preprocess = preprocess or PreprocessConfig()
    chosen = (
        [tuple(f) for f in held_out_folds]
        if held_out_folds is not None
        else patient_folds(usable, folds, seed=config.seed)
    )
    results: list[list[RecordResult]] = []
    notes: list[dict[str, Any]] = []
    loaded: dict[str, RecordBeats] = {}
    for fold, held_out in enumerate(chosen):
        on_fold(fold, held_out)
        training = [r for r in usable if r not in held_out]
        for name in training:
            if name not in loaded:
                loaded[name] = record_beats(data_dir, name, preprocess)
        with tempfile.TemporaryDirectory(prefix="ecgstream-cv-") as tmp:
            outcome = train_and_save(
                data_dir,
                training,
                Path(tmp) / "model",
                config,
                preprocess=preprocess,
                beats_per_record=beats_per_record,
                loaded=loaded,
            )
            model = load_artifact(Path(tmp) / "model")
            fold_results = []
            for name in held_out:
                result = evaluate_record(model, data_dir, name)
                on_record(result)
                fold_results.append(result)
        results.append(fold_results)
        notes.append(
            {
                "validation_records": list(outcome.validation_records),
                "best_epoch": outcome.best_epoch,
            }
        )
    return CrossValidation(results, notes)


@dataclass(frozen=True, eq=False)
class CrossValidation:
    folds: list[list[RecordResult]]  # the held-out records of each fold
    notes: list[dict[str, Any]]  # what each fold chose on its own validation patients

    @property
    def results(self) -> list[RecordResult]:
        return [result for fold in self.folds for result in fold]
