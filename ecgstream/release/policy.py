"""The release policy file (`tuning/release-policy.toml`), read into typed settings: the patient
splits, the search budget, the holdout gate's rules and the infravalidation limits."""

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


class Splits(_Strict):
    """Patient-wise splits: every record is one patient and belongs to one split only."""

    train: tuple[str, ...]
    validation: tuple[str, ...]  # early stopping and ASHA during the search
    test: tuple[str, ...]  # selection among the search's best trials; never seen by the search
    holdout: tuple[str, ...]  # the gate; used by nothing else
    infravalidation: tuple[str, ...]  # replayed through staging; labels are not needed

    def model_post_init(self, _context: object) -> None:
        seen: dict[str, str] = {}
        for split in ("train", "validation", "test", "holdout", "infravalidation"):
            records = getattr(self, split)
            if not records:
                raise ValueError(f"split {split} is empty")
            for record in records:
                if record in seen:
                    raise ValueError(f"record {record} is in {seen[record]} and in {split}")
                seen[record] = split


class SearchPolicy(_Strict):
    samples: int = Field(8, ge=1)
    max_epochs: int = Field(12, ge=1)
    grace_epochs: int = Field(2, ge=1)  # ASHA never stops a trial before this many epochs
    reduction_factor: int = Field(2, ge=2)
    cpus_per_trial: float = Field(1.0, gt=0)
    beats_per_record: int = Field(0, ge=0)  # 0: every labelled beat; else a seeded subsample
    top_k: int = Field(3, ge=1)  # trials re-scored on the test split
    seed: int = 0


class InfravalidationPolicy(_Strict):
    load_timeout_s: float = Field(gt=0)
    minutes_per_record: float = Field(gt=0)
    speed: float = Field(gt=0)  # replay speed (x real time)
    p99_latency_ms: float = Field(gt=0)
    probability_tolerance: float = Field(ge=0)
    max_replica_rss_mb: float = Field(gt=0)
    attempts: int = Field(ge=1)


class GuardPolicy(_Strict):
    """After a promotion, the serving signals are watched for `window_s`; a breach that holds
    `breach_for_s` rolls production back, within `rollback_within_s` of the breach's start
    (decision 101)."""

    window_s: float = Field(300.0, gt=0)
    interval_s: float = Field(5.0, gt=0)
    breach_for_s: float = Field(10.0, ge=0)
    rollback_within_s: float = Field(30.0, gt=0)
    p99_latency_s: float = Field(2.0, gt=0)  # chunk's Kafka timestamp -> beat classified
    max_error_rate: float = Field(0.01, ge=0)  # retried steps and dead letters per chunk
    alarm_rate_ratio: float = Field(3.0, gt=1)  # clinical alarms per minute vs before
    min_alarms_per_minute: float = Field(2.0, ge=0)  # ... and at least this many
    drift_kinds: tuple[str, ...] = ("prediction",)  # flags that must not turn on


class ReleasePolicy(_Strict):
    primary_metric: str = "macro_f1"
    splits: Splits
    search: SearchPolicy = SearchPolicy()
    against_production: AgainstProduction
    first_model: FirstModel
    infravalidation: InfravalidationPolicy
    guard: GuardPolicy = GuardPolicy()

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
