from __future__ import annotations

from pathlib import Path

import pytest

from ecgstream.aami import aami_class
from ecgstream.records import load_reference_beats
from ecgstream.splits import DS1, PACED, PatientSplit, holdout_split, patient_folds


@pytest.mark.parametrize(
    ("symbols", "label"),
    [("NLRej", "N"), ("AaJS", "S"), ("VE", "V"), ("F", "F"), ("/fQ", "Q")],
)
def test_beat_symbols_map_to_aami_classes(symbols: str, label: str) -> None:
    assert {aami_class(s) for s in symbols} == {label}


@pytest.mark.parametrize("symbol", [*'+~|!x"[]', "", "MISSB"])
def test_non_beat_annotations_have_no_class(symbol: str) -> None:
    assert aami_class(symbol) is None


def test_ds1_class_counts_match_the_published_counts(mitdb_dir: Path) -> None:
    counts: dict[str, int] = {}
    for name in DS1:
        for label in load_reference_beats(mitdb_dir, name).labels:
            counts[str(label)] = counts.get(str(label), 0) + 1
    # the data README's counts for DS1
    assert counts == {"N": 45_866, "S": 944, "V": 3_788, "F": 415, "Q": 8}


def test_folds_partition_the_patients() -> None:
    folds = patient_folds(DS1, 5, seed=1)
    flat = [r for fold in folds for r in fold]
    assert sorted(flat) == sorted(DS1)
    assert len(flat) == len(set(flat))
    assert {len(f) for f in folds} <= {4, 5}
    assert patient_folds(DS1, 5, seed=1) == folds  # seeded
    with pytest.raises(ValueError, match="k must be"):
        patient_folds(DS1, 1)


def test_holdout_split_is_disjoint_and_a_patient_never_sits_in_two_splits() -> None:
    split = holdout_split(DS1, 0.25, seed=0)
    assert not set(split.train) & set(split.validation)
    assert sorted(split.train + split.validation) == sorted(DS1)
    with pytest.raises(ValueError, match="records in two splits"):
        PatientSplit(train=("101", "106"), validation=("106",))
    assert not set(PACED) & set(DS1)
