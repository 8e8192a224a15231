"""The beat classifier: a compact 1D-CNN over the beat window, joined with the RR features."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, cast

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
    rr_features: int = BeatConfig().n_features
    hidden: int = 32
    dropout: float = 0.2
    n_classes: int = len(MODEL_CLASSES)
    # the leading features that are seconds or ratios and enter as logs (None: all of them): the
    # RR features; feature set 2's patient-relative ones are already on a log or unit scale
    log_features: int | None = len(RR_FEATURES)
    # in an irregular rhythm (AF) prematurity is no evidence of an S beat, and the reference
    # labels beats in AF as N: where this feature (rr_irregularity) exceeds the threshold, S's
    # probability is handed to N. A physiological prior, not fitted: sinus rhythm varies beat to
    # beat by well under 10 %, AF by 15-20 % and more (docs/decisions.md).
    irregular_rhythm_feature: int | None = None
    irregular_rhythm_threshold: float = 0.2
    # the CNN looks at the first `window_channels` channels of the window (None: all); with two
    # leads, 2 keeps it on the detection lead (the second lead enters through its features)
    window_channels: int | None = None
    # feature-only networks (no CNN) combined with this one: each early-stops on its own
    # validation patients. S beats look like the patient's N beats, so their evidence is the
    # rhythm: S's probability comes from these networks alone; the split of the rest between
    # N, V and F averages them with this network, whose CNN sees the shape (docs/decisions.md)
    feature_networks: int = 0
    feature_hidden: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**{**data, "channels": tuple(data["channels"])})

    @classmethod
    def cropped(cls, window: int, beat: BeatConfig | None = None, **fields: Any) -> ModelConfig:
        """A network that sees `window` samples of the stream's beat window, keeping the R
        peak at the same relative position: the stream's preprocessing stays the same for every
        model, so models with different window lengths can replace each other live."""
        beat = beat or BeatConfig()
        if not 32 <= window <= beat.window:
            raise ValueError(f"window must be in 32..{beat.window}, got {window}")
        start = round((beat.window - window) * beat.before / beat.window)
        return cls(
            in_channels=beat.channels,
            window=window,
            crop_start=start,
            rr_features=beat.n_features,
            **fields,
        )


class BeatClassifier(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        previous = config.window_channels or config.in_channels
        for width in config.channels:
            layers += [
                nn.Conv1d(previous, width, config.kernel_size, padding=config.kernel_size // 2),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
            previous = width
        # no channels: the network sees only the features (the window's shape enters through
        # the morphology features against the patient's own dominant beat)
        self.features = nn.Sequential(*layers)
        pooled = 2 * previous if config.channels else 0
        # RR features are ratios and seconds: log-scale them so 0.5x and 2x are symmetric
        self.rr = nn.Sequential(nn.Linear(config.rr_features, config.hidden), nn.ReLU())
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(pooled + config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.n_classes),
        )
        if config.feature_networks:
            self.feature_networks = nn.ModuleList(
                BeatClassifier(feature_network_config(config))
                for _ in range(config.feature_networks)
            )

    def forward(self, window: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        logits = self._logits(window, rr)
        if self.config.feature_networks:
            logits = self._combined(logits, window, rr)
        if self.config.irregular_rhythm_feature is not None and not self.training:
            logits = self._irregular_rhythm_gate(logits, rr)  # a decision rule, not trained
        return logits

    def _features_in(self, rr: torch.Tensor) -> torch.Tensor:
        n_log = self.config.log_features
        if n_log is None:
            return torch.log(rr.clamp(min=1e-3))
        return torch.cat((torch.log(rr[:, :n_log].clamp(min=1e-3)), rr[:, n_log:]), dim=1)

    def _logits(self, window: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        hidden = self.rr(self._features_in(rr))
        if self.config.channels:
            if window.shape[-1] != self.config.window:
                start = self.config.crop_start
                window = window[..., start : start + self.config.window]
            if self.config.window_channels is not None:
                window = window[:, : self.config.window_channels]
            x = self.features(window)
            hidden = torch.cat((x.mean(dim=2), x.amax(dim=2), hidden), dim=1)
        return self.head(hidden)

    def _combined(
        self, logits: torch.Tensor, window: torch.Tensor, rr: torch.Tensor
    ) -> torch.Tensor:
        own = torch.softmax(logits, dim=1)
        rhythm = self._feature_network_probabilities(rr)
        s = rhythm[:, _S : _S + 1]
        rest = [i for i in range(self.config.n_classes) if i != _S]
        mixed = (0.5 * _normalised(own[:, rest]) + 0.5 * _normalised(rhythm[:, rest])) * (1 - s)
        probabilities = torch.cat((mixed[:, :_S], s, mixed[:, _S:]), dim=1)
        return torch.log(probabilities.clamp(min=1e-12))

    def _feature_network_probabilities(self, rr: torch.Tensor) -> torch.Tensor:
        """The feature networks' mean probabilities, all networks in one batched product per
        layer (the same arithmetic as running each: a handful of operations instead of a
        handful per network, which is what a beat costs on the edge)."""
        nets = self.feature_networks

        def stacked(layer: str) -> tuple[torch.Tensor, torch.Tensor]:
            layers = [cast(nn.Linear, net.get_submodule(layer)) for net in nets]
            weight = torch.stack([m.weight.transpose(0, 1) for m in layers])  # (k, in, out)
            return weight, torch.stack([m.bias for m in layers])[:, None, :]

        x = self._features_in(rr)[None]  # (1, n, features)
        for layer in ("rr.0", "head.1"):
            weight, bias = stacked(layer)
            x = torch.relu(torch.matmul(x, weight) + bias)
        weight, bias = stacked("head.3")
        return torch.softmax(torch.matmul(x, weight) + bias, dim=2).mean(dim=0)

    def _irregular_rhythm_gate(self, logits: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        config = self.config
        assert config.irregular_rhythm_feature is not None
        irregular = (rr[:, config.irregular_rhythm_feature] > config.irregular_rhythm_threshold)[
            :, None
        ]
        n, s = logits[:, :1], logits[:, 1:2]
        gated = torch.cat((torch.logaddexp(n, s), torch.full_like(s, -30.0), logits[:, 2:]), dim=1)
        return torch.where(irregular, gated, logits)


_S = MODEL_CLASSES.index("S")


def _normalised(p: torch.Tensor) -> torch.Tensor:
    return p / p.sum(dim=1, keepdim=True).clamp(min=1e-12)


def standalone_config(config: ModelConfig) -> ModelConfig:
    """The main network alone, as it is trained: no feature networks, no decision rule."""
    return replace(config, feature_networks=0, irregular_rhythm_feature=None)


def feature_network_config(config: ModelConfig) -> ModelConfig:
    """One feature-only network of a combined model, as it is trained."""
    return replace(
        config,
        channels=(),
        hidden=config.feature_hidden,
        window_channels=None,
        feature_networks=0,
        irregular_rhythm_feature=None,
    )


def combine(
    main: BeatClassifier, feature_networks: list[BeatClassifier], config: ModelConfig
) -> BeatClassifier:
    """Separately trained networks as the one model `config` describes, its decision rules on."""
    if len(feature_networks) != config.feature_networks:
        raise ValueError(
            f"{len(feature_networks)} feature networks, config has {config.feature_networks}"
        )
    model = BeatClassifier(config)
    state = dict(main.state_dict())
    for index, network in enumerate(feature_networks):
        state.update({f"feature_networks.{index}.{k}": v for k, v in network.state_dict().items()})
    model.load_state_dict(state)
    return model.to(next(main.parameters()).device).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
