"""The beat classifier: a compact 1D-CNN over the beat window, joined with the RR features."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ecgstream.aami import MODEL_CLASSES
from ecgstream.beats import RR_FEATURES, BeatConfig


@dataclass(frozen=True)
class ModelConfig:
    in_channels: int = BeatConfig().channels
    window: int = 256  # samples of the beat window the network looks at ...
    crop_start: int = 0  # ... starting here in the window the stream cuts (a tunable length)
    channels: tuple[int, ...] = (16, 32, 32)
    kernel_size: int = 7
    rr_features: int = len(RR_FEATURES)
    hidden: int = 32
    dropout: float = 0.2
    n_classes: int = len(MODEL_CLASSES)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**{**data, "channels": tuple(data["channels"])})

    @classmethod
    def cropped(cls, window: int, beat: BeatConfig | None = None, **fields: object) -> ModelConfig:
        """A network that sees `window` samples of the stream's beat window, keeping the R
        peak at the same relative position: the stream's preprocessing stays the same for every
        model, so models with different window lengths can replace each other live."""
        beat = beat or BeatConfig()
        if not 32 <= window <= beat.window:
            raise ValueError(f"window must be in 32..{beat.window}, got {window}")
        start = round((beat.window - window) * beat.before / beat.window)
        return cls(in_channels=beat.channels, window=window, crop_start=start, **fields)


class BeatClassifier(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        previous = config.in_channels
        for width in config.channels:
            layers += [
                nn.Conv1d(previous, width, config.kernel_size, padding=config.kernel_size // 2),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        # RR features are ratios and seconds: log-scale them so 0.5x and 2x are symmetric
        self.rr = nn.Sequential(nn.Linear(config.rr_features, config.hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(2 * previous + config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.n_classes),
        )

    def forward(self, window: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        if window.shape[-1] != self.config.window:
            start = self.config.crop_start
            window = window[..., start : start + self.config.window]
        x = self.features(window)
        pooled = torch.cat((x.mean(dim=2), x.amax(dim=2)), dim=1)
        rr_log = torch.log(rr.clamp(min=1e-3))
        return self.head(torch.cat((pooled, self.rr(rr_log)), dim=1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
