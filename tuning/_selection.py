"""Selection: the search's best trials (by validation) re-scored on the test patients, whom the
search never saw; the best on test becomes the candidate artifact, with the offline predictions
the infravalidation will hold its serving output to."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgstream.artifact import ModelArtifact
from ecgstream.dataset import detect_beats
from ecgstream.ec57 import class_metrics, macro_f1
from ecgstream.evaluation import evaluate_records
from ecgstream.model import BeatClassifier
from ecgstream.records import load_record
from ecgstream.release.policy import ReleasePolicy
from ecgstream.splits import PatientSplit
from ecgstream.stream import PreprocessConfig
from ecgstream.trainer import write_artifact
from ecgstream.training import TrainConfig
from tuning._search import SearchData, SearchOutcome, TrialOutcome, load_trial_model

EXPECTED_FILE = "expected-infravalidation.npz"
CHUNK_S = 1.0  # devices (and the replay) send one-second chunks


def ec57_summary(model: ModelArtifact, data_dir: Path, records: Sequence[str]) -> dict[str, Any]:
    """EC57 gross figures over `records` through the streaming path."""
    classes = class_metrics(r.score for r in evaluate_records(model, data_dir, records))
    return {
        "records": list(records),
        "macro_f1": round(macro_f1(classes), 4),
        "classes": {c: {"se": m.se, "ppv": m.ppv} for c, m in classes.items()},
    }


@dataclass(frozen=True, eq=False)
class Selection:
    trial: TrialOutcome
    config: TrainConfig
    model: BeatClassifier
    test: dict[str, Any]
    ranking: list[dict[str, Any]]  # every re-scored trial: id, validation and test macro-F1


def select_on_test(
    search: SearchOutcome,
    policy: ReleasePolicy,
    data_dir: Path,
    preprocess: PreprocessConfig,
    on_trial: Callable[[str], None] = lambda trial_id: None,
) -> Selection:
    """Re-score the top-k trials on the test patients and keep the best (ties: validation)."""
    scored = []
    for trial in search.best(policy.search.top_k):
        on_trial(trial.trial_id)
        config, model = load_trial_model(trial, policy.search)
        test = ec57_summary(
            ModelArtifact.in_memory(model, preprocess, trial.trial_id), data_dir, policy.splits.test
        )
        scored.append((test["macro_f1"], trial.best_val_macro_f1, trial, config, model, test))
    if not scored:
        raise ValueError("the search produced no trial with a checkpoint")
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    _, _, trial, config, model, test = scored[0]
    ranking = [
        {"trial": t.trial_id, "validation_macro_f1": round(v, 4), "test_macro_f1": f}
        for f, v, t, *_ in scored
    ]
    return Selection(trial, config, model, test, ranking)


def expected_predictions(
    model: ModelArtifact, data_dir: Path, records: Sequence[str], minutes: float
) -> bytes:
    """What serving must reproduce: the beats and probabilities of the first `minutes` of each
    infravalidation record, computed offline from the in-memory model, fed in one-second
    chunks as devices send them. Stored beside the artifact as an .npz file."""
    arrays: dict[str, np.ndarray] = {}
    for name in records:
        record = load_record(data_dir, name)
        n = min(record.n_samples, round(minutes * 60 * record.fs))
        _, beats = detect_beats(record.head(n), model.preprocess, round(CHUNK_S * record.fs))
        samples = np.array([b.device_sample for b in beats], dtype=np.int64)
        if beats:
            proba = model.predict_proba(
                np.stack([b.features.window for b in beats]),
                np.stack([b.features.rr for b in beats]),
            )
        else:
            proba = np.zeros((0, len(model.classes)), np.float32)
        arrays[f"{name}/samples"] = samples
        arrays[f"{name}/probabilities"] = proba
        arrays[f"{name}/n_samples"] = np.array(n)
        arrays[f"{name}/fs"] = np.array(record.fs)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        meta=np.array(json.dumps({"records": list(records), "minutes": minutes})),
        **arrays,  # type: ignore[arg-type]
    )
    return buffer.getvalue()


def write_candidate(
    selection: Selection,
    data: SearchData,
    policy: ReleasePolicy,
    data_dir: Path,
    preprocess: PreprocessConfig,
    out_dir: Path,
    experiment: str,
) -> str:
    """Save the selected model as an artifact whose card names its trial, splits and scores."""
    splits = policy.splits
    return write_artifact(
        out_dir,
        selection.model,
        selection.config,
        preprocess,
        data_dir=data_dir,
        records=[*splits.train, *splits.validation],
        split=PatientSplit(splits.train, splits.validation, splits.test),
        train=data.train,
        validation=data.validation,
        training={
            "search": experiment,
            "trial": selection.trial.trial_id,
            "epochs_run": selection.trial.epochs_run,
            "best_validation_macro_f1": round(selection.trial.best_val_macro_f1, 4),
        },
        metrics={"test": selection.test, "selection": selection.ranking},
    )
