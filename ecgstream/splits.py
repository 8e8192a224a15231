"""Patient-wise splits of MIT-BIH: no patient is ever in two splits.

One MIT-BIH record is one patient (records 201 and 202 are the same man, and 202 is not in DS1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# de Chazal et al. (2004) inter-patient training set
DS1: tuple[str, ...] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122",
    "124", "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)  # fmt: skip
# paced records: excluded from AAMI beat-class statistics and from training
PACED: tuple[str, ...] = ("102", "104", "107", "217")


@dataclass(frozen=True)
class PatientSplit:
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        groups = [set(self.train), set(self.validation), set(self.test)]
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                if a & b:
                    raise ValueError(f"records in two splits: {sorted(a & b)}")


def patient_folds(records: Sequence[str], k: int, seed: int = 0) -> list[tuple[str, ...]]:
    """Partition records into k disjoint folds (a seeded shuffle, as even as possible)."""
    if not 2 <= k <= len(records):
        raise ValueError(f"k must be in 2..{len(records)}, got {k}")
    order = np.random.default_rng(seed).permutation(len(records))
    return [tuple(sorted(records[i] for i in order[f::k])) for f in range(k)]


def holdout_split(
    records: Sequence[str], validation_fraction: float = 0.2, seed: int = 0
) -> PatientSplit:
    """Train/validation split by patient: the validation patients are never trained on."""
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = max(1, round(len(records) * validation_fraction))
    validation = tuple(sorted(records[i] for i in order[:n_val]))
    train = tuple(sorted(records[i] for i in order[n_val:]))
    return PatientSplit(train=train, validation=validation)
