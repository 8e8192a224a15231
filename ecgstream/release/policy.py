"""The release policy file (`tuning/release-policy.toml`), read into typed settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ecgstream.ec57 import SCORED_CLASSES

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "tuning" / "release-policy.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgainstProduction(_Strict):
    margin: float = Field(ge=0)
    significance: float = Field(gt=0, lt=1)
    bootstrap_samples: int = Field(ge=100)
    bootstrap_seed: int = 0
    class_tolerance: float = Field(ge=0)


class FirstModel(_Strict):
    macro_f1: float = Field(ge=0, le=1)
    sensitivity: dict[str, float] = {}
    positive_predictivity: dict[str, float] = {}


class ReleasePolicy(_Strict):
    primary_metric: str = "macro_f1"
    against_production: AgainstProduction
    first_model: FirstModel

    def model_post_init(self, _context: object) -> None:
        if self.primary_metric != "macro_f1":
            raise ValueError(f"unknown primary_metric {self.primary_metric!r} (macro_f1)")
        unknown = (
            set(self.first_model.sensitivity) | set(self.first_model.positive_predictivity)
        ) - set(SCORED_CLASSES)
        if unknown:
            raise ValueError(f"thresholds for unknown classes {sorted(unknown)}")


def load_policy(path: Path = DEFAULT_POLICY) -> ReleasePolicy:
    with path.open("rb") as handle:
        return ReleasePolicy.model_validate(tomllib.load(handle))
