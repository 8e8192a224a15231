"""Named training recipes: the preprocessing and training configuration that `ecgstream train`
and `ecgstream crossval` use together, so a recipe's cross-validated figures describe exactly
the model that the same recipe trains (docs/decisions.md says how the default was chosen)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecgstream.beats import BeatConfig, feature_names
from ecgstream.model import ModelConfig
from ecgstream.stream import PreprocessConfig
from ecgstream.training import TrainConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_PATIENT_RELATIVE = BeatConfig()  # feature set 2, both leads

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="rr-template-v1",
            summary="the first recipe: one lead, RR features against a 10-beat mean, the beat "
            "minus the median of the last 8 beats, one CNN, class-weighted argmax",
            preprocess=PreprocessConfig(beat=BeatConfig(feature_set=1, n_leads=1)),
            train=TrainConfig(model=ModelConfig(in_channels=2, rr_features=8, log_features=None)),
        ),
        Recipe(
            name="patient-relative-v2",
            summary="both leads' features against the patient's own rhythm (32-beat median RR, "
            "irregularity) and dominant beat (online clusters); S from 4 feature-only networks, "
            "N/V/F shared with a CNN on the detection lead; no S call in an irregular rhythm",
            preprocess=PreprocessConfig(beat=_PATIENT_RELATIVE),
            train=TrainConfig(
                n_beats_per_epoch=0.3,
                model=ModelConfig(
                    in_channels=_PATIENT_RELATIVE.channels,
                    window_channels=2,
                    rr_features=_PATIENT_RELATIVE.n_features,
                    irregular_rhythm_feature=feature_names(2, 2).index("rr_irregularity"),
                    feature_networks=4,
                ),
            ),
        ),
    )
}
DEFAULT_RECIPE = "patient-relative-v2"


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
