"""The hyperparameter search: Ray Tune with Optuna's TPE sampler proposing configurations and
ASHA stopping the weak ones early, judged on the validation patients (never the test or holdout
patients). Every epoch is checkpointed, so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from ecgstream.dataset import TrainingSet, record_beats, subsample_beats, training_set
from ecgstream.errors import ConfigurationError
from ecgstream.model import ModelConfig
from ecgstream.release.policy import SearchPolicy, Splits
from ecgstream.stream import PreprocessConfig
from ecgstream.training import EpochTrainer, TrainConfig

METRIC = "val_macro_f1"
STATE_FILE = "trainer.pt"


def search_space() -> dict[str, Any]:
    """What the search may change. Window lengths are crops of the stream's 256-sample window,
    so every candidate runs behind the same live preprocessing (see ModelConfig.cropped)."""
    return {
        "width": tune.choice([8, 16, 24]),
        "kernel_size": tune.choice([5, 7, 9]),
        "hidden": tune.choice([16, 32]),
        "dropout": tune.uniform(0.0, 0.4),
        "window": tune.choice([160, 192, 224, 256]),
        "learning_rate": tune.loguniform(5e-4, 5e-3),
        "weight_decay": tune.loguniform(1e-6, 1e-3),
        "class_weight_power": tune.uniform(0.3, 1.0),
    }


def train_config(params: dict[str, Any], epochs: int, seed: int, threads: int) -> TrainConfig:
    """A trial's parameters as the training recipe's typed config."""
    width = int(params["width"])
    model = ModelConfig.cropped(
        int(params["window"]),
        channels=(width, 2 * width, 2 * width),
        kernel_size=int(params["kernel_size"]),
        hidden=int(params["hidden"]),
        dropout=float(params["dropout"]),
    )
    return TrainConfig(
        epochs=epochs,
        learning_rate=float(params["learning_rate"]),
        weight_decay=float(params["weight_decay"]),
        class_weight_power=float(params["class_weight_power"]),
        seed=seed,
        threads=threads,
        model=model,
    )


@dataclass(frozen=True, eq=False)
class SearchData:
    train: TrainingSet
    validation: TrainingSet


def load_search_data(
    data_dir: Path, splits: Splits, preprocess: PreprocessConfig, beats_per_record: int, seed: int
) -> SearchData:
    """Beats of the train and validation patients through the streaming detector."""

    def beats(records: Sequence[str]) -> TrainingSet:
        return training_set(
            subsample_beats(record_beats(data_dir, r, preprocess), beats_per_record, seed)
            for r in records
        )

    return SearchData(train=beats(splits.train), validation=beats(splits.validation))


def _trial(params: dict[str, Any], data: SearchData, epochs: int, seed: int) -> None:
    """One trial: train epoch by epoch, report validation macro-F1, checkpoint each epoch."""
    assigned = ray.get_runtime_context().get_assigned_resources()
    threads = max(1, int(assigned.get("CPU", 1)))
    device = "cuda" if assigned.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    trainer = EpochTrainer(
        data.train, data.validation, train_config(params, epochs, seed, threads), device
    )
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            state = torch.load(Path(path) / STATE_FILE, map_location=device, weights_only=False)
            trainer.load_state(state)
    while trainer.epoch < epochs:
        report = trainer.run_epoch()
        with tempfile.TemporaryDirectory(prefix="ecgstream-trial-") as path:
            torch.save(trainer.state(), Path(path) / STATE_FILE)
            tune.report(
                {
                    METRIC: report.validation_macro_f1,
                    "train_loss": report.train_loss,
                    "epoch": report.epoch,
                    **{f"val_{c}_se": m.se for c, m in report.validation.items()},
                },
                checkpoint=tune.Checkpoint.from_directory(path),
            )


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: str
    params: dict[str, Any]
    best_val_macro_f1: float
    epochs_run: int
    stopped_early: bool
    checkpoint: Path | None

    def train_config(self, policy: SearchPolicy) -> TrainConfig:
        return train_config(self.params, policy.max_epochs, policy.seed, threads=1)


@dataclass(frozen=True)
class SearchOutcome:
    experiment: Path
    trials: list[TrialOutcome]
    resumed: bool

    def best(self, k: int) -> list[TrialOutcome]:
        usable = [t for t in self.trials if t.checkpoint is not None]
        return sorted(usable, key=lambda t: t.best_val_macro_f1, reverse=True)[:k]

    def summary(self) -> dict[str, Any]:
        return {
            "experiment": str(self.experiment),
            "resumed": self.resumed,
            "trials": len(self.trials),
            "stopped_early": sum(t.stopped_early for t in self.trials),
            "best_val_macro_f1": max((t.best_val_macro_f1 for t in self.trials), default=None),
        }


def trial_cpus(policy: SearchPolicy) -> float:
    """Trials ask for the policy's CPUs, or what the cluster has free (a running pipeline holds
    some), so a search on a 2-core machine runs instead of waiting forever."""
    free = ray.available_resources().get("CPU", 0.0)
    if free < 0.25:
        raise ConfigurationError(
            f"the Ray cluster has {free:.2f} CPUs free; stop the stream or add a node"
        )
    return min(policy.cpus_per_trial, math.floor(free * 4) / 4)


def run_search(
    data: SearchData,
    policy: SearchPolicy,
    storage: Path,
    name: str,
    *,
    resume: bool = True,
    verbose: int = 1,
) -> SearchOutcome:
    """Run (or resume) the search `name` under `storage`; Ray must be initialised."""
    # one snapshot per checkpoint is what makes an interrupted search resumable; Tune warns
    # about it on every short epoch
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    experiment = storage / name
    trainable = tune.with_parameters(_trial, data=data, epochs=policy.max_epochs, seed=policy.seed)
    cpus = trial_cpus(policy)
    gpus = 1 if ray.available_resources().get("GPU", 0) >= 1 else 0
    trainable = tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})
    resumed = resume and tune.Tuner.can_restore(str(experiment))
    if resumed:
        tuner = tune.Tuner.restore(
            str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        concurrent = max(1, int(ray.available_resources().get("CPU", 1) // cpus))
        searcher = ConcurrencyLimiter(
            OptunaSearch(metric=METRIC, mode="max", seed=policy.seed), max_concurrent=concurrent
        )
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=policy.max_epochs,
            grace_period=min(policy.grace_epochs, policy.max_epochs),
            reduction_factor=policy.reduction_factor,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=policy.samples,
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=verbose,
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1,
                    checkpoint_score_attribute=METRIC,
                    checkpoint_score_order="max",
                ),
            ),
        )
    grid = tuner.fit()
    trials = []
    for result in grid:  # type: ignore[attr-defined]
        if result.metrics is None or METRIC not in (result.metrics or {}):
            continue
        history = result.metrics_dataframe
        best = result.get_best_checkpoint(METRIC, "max")
        epochs_run = int(result.metrics.get("training_iteration", 0))
        trials.append(
            TrialOutcome(
                trial_id=str(result.metrics.get("trial_id", result.path)),
                params=dict(result.config),
                best_val_macro_f1=float(history[METRIC].max()),
                epochs_run=epochs_run,
                stopped_early=epochs_run < policy.max_epochs,
                checkpoint=Path(best.path) if best is not None else None,
            )
        )
    return SearchOutcome(experiment=experiment, trials=trials, resumed=resumed)


def load_trial_model(trial: TrialOutcome, policy: SearchPolicy) -> tuple[TrainConfig, Any]:
    """The trial's model at its best validation epoch."""
    if trial.checkpoint is None:
        raise ConfigurationError(f"trial {trial.trial_id} has no checkpoint")
    config = trial.train_config(policy)
    state = torch.load(trial.checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
    from ecgstream.model import BeatClassifier

    model = BeatClassifier(config.model)
    model.load_state_dict(state["model"])
    model.eval()
    return config, model
