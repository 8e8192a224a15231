"""Training one classifier configuration, deterministically, with early stopping."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgstream.aami import MODEL_CLASSES
from ecgstream.dataset import TrainingSet
from ecgstream.ec57 import SePp
from ecgstream.model import BeatClassifier, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 6  # epochs without validation improvement before stopping
    class_weight_power: float = 1.0  # weight = (n_max / n_class) ** power
    amplitude_jitter: float = 0.15  # augmentation: scale beats by 1 +- this
    noise_std: float = 0.02  # augmentation: Gaussian noise on the scaled window
    # share of the N beats drawn afresh for each epoch (all other beats are always used):
    # N beats are ~90 % of MIT-BIH and alike, so a fraction of them per epoch trains as well
    # in a fraction of the time
    n_beats_per_epoch: float = 1.0
    seed: int = 0
    threads: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The config a model card's `hyperparameters` recorded (`to_dict`)."""
        fields = {k: v for k, v in data.items() if k != "model"}
        return cls(**fields, model=ModelConfig.from_dict(data["model"]))


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    validation_macro_f1: float
    validation: dict[str, SePp]


@dataclass(frozen=True)
class TrainResult:
    model: BeatClassifier
    best_epoch: int
    history: list[EpochReport]


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def class_weights(counts: np.ndarray, power: float) -> torch.Tensor:
    counts = np.maximum(counts, 1).astype(np.float64)
    weights = (counts.max() / counts) ** power
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def beat_metrics(targets: np.ndarray, predicted: np.ndarray) -> tuple[float, dict[str, SePp]]:
    """Per-class Se/+P and macro-F1 on matched beats (for early stopping, not EC57 reporting)."""
    per_class = {}
    f1s = []
    for index, name in enumerate(MODEL_CLASSES):
        tp = int(((predicted == index) & (targets == index)).sum())
        positives = int((targets == index).sum())
        called = int((predicted == index).sum())
        se = tp / positives if positives else float("nan")
        ppv = tp / called if called else float("nan")
        per_class[name] = SePp(se=se, ppv=ppv)
        f1s.append(0.0 if not tp else 2 * se * ppv / (se + ppv))
    return float(np.mean(f1s)), per_class


class EpochTrainer:
    """One configuration's training, an epoch at a time: `train_classifier` drives it with
    patience, a Ray Tune trial with ASHA. Its whole state (weights, optimiser, schedule, random
    generator) can be saved and restored, so an interrupted search resumes where it was."""

    def __init__(
        self,
        train: TrainingSet,
        validation: TrainingSet,
        config: TrainConfig,
        device: str = "cpu",
    ) -> None:
        seed_everything(config.seed, config.threads)
        if device != "cpu":
            # some CUDA kernels (max-pool backward) have no deterministic version: run them and
            # warn rather than fail; CPU training stays bit-for-bit reproducible
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.config = config
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(config.seed)  # on the CPU: same draws
        self.model = BeatClassifier(config.model).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.epochs
        )
        counts = np.bincount(train.targets, minlength=len(MODEL_CLASSES)).astype(np.float64)
        counts[0] *= config.n_beats_per_epoch  # what an epoch sees
        self.loss_fn = nn.CrossEntropyLoss(
            weight=class_weights(counts, config.class_weight_power).to(self.device)
        )
        # copies: the arrays may be read-only views of Ray's object store
        self.windows = torch.tensor(train.windows)
        self.rr = torch.tensor(train.rr)
        self.targets = torch.tensor(train.targets)
        self.validation = validation
        self.epoch = 0

    def run_epoch(self) -> EpochReport:
        config, generator, model = self.config, self.generator, self.model
        model.train()
        order = torch.randperm(len(self.targets), generator=generator)
        if config.n_beats_per_epoch < 1.0:
            is_n = self.targets[order] == 0
            keep = ~is_n | (torch.rand(len(order), generator=generator) < config.n_beats_per_epoch)
            order = order[keep]
        total, batches = 0.0, 0
        for begin in range(0, len(order), config.batch_size):
            index = order[begin : begin + config.batch_size]
            w = self.windows[index]
            if config.amplitude_jitter:
                scale = 1 + config.amplitude_jitter * (
                    2 * torch.rand((len(index), 1, 1), generator=generator) - 1
                )
                w = w * scale
            if config.noise_std:
                w = w + config.noise_std * torch.randn(w.shape, generator=generator)
            self.optimizer.zero_grad()
            loss = self.loss_fn(
                model(w.to(self.device), self.rr[index].to(self.device)),
                self.targets[index].to(self.device),
            )
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            batches += 1
        self.scheduler.step()
        self.epoch += 1
        macro_f1, per_class = beat_metrics(self.validation.targets, self.predict(self.validation))
        return EpochReport(self.epoch, total / max(1, batches), macro_f1, per_class)

    @torch.inference_mode()
    def predict(self, data: TrainingSet) -> np.ndarray:
        self.model.eval()
        windows, rr = torch.tensor(data.windows), torch.tensor(data.rr)
        logits = [
            self.model(windows[b : b + 2048].to(self.device), rr[b : b + 2048].to(self.device))
            for b in range(0, len(data), 2048)
        ]
        return torch.cat(logits).argmax(dim=1).cpu().numpy() if logits else np.zeros(0, np.int64)

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout draws from the global generator
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())


def train_classifier(
    train: TrainingSet,
    validation: TrainingSet,
    config: TrainConfig,
    on_epoch: Callable[[EpochReport], None] = lambda report: None,
) -> TrainResult:
    trainer = EpochTrainer(train, validation, config)
    best_f1, best_state, best_epoch, stale = -1.0, None, 0, 0
    history: list[EpochReport] = []
    for _ in range(config.epochs):
        report = trainer.run_epoch()
        history.append(report)
        on_epoch(report)
        if report.validation_macro_f1 > best_f1:
            best_f1, best_epoch, stale = report.validation_macro_f1, report.epoch, 0
            best_state = copy.deepcopy(trainer.model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    assert best_state is not None
    model = trainer.model
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model=model, best_epoch=best_epoch, history=history)
