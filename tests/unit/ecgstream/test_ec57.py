"""EC57 scoring against hand-worked answers, the matching edge cases, and matching invariants."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from ecgstream.ec57 import (
    DETECTION_COLUMNS,
    REFERENCE_ROWS,
    RecordScore,
    SePp,
    class_metrics,
    confusion_table,
    ec57_table,
    evaluation_report,
    macro_f1,
    match_beats,
    merge_confusion,
    qrs_metrics,
    score_record,
)

FS = 360.0
TOL = 54  # 0.150 s at 360 Hz

# Hand-made record (no skip). Matching, tolerance 54 samples:
#   ref  100 N  <- det  110 N   (10 away)              N -> N
#   ref  400 V  <- det  454 V   (exactly +54: matches)  V -> V
#   ref  700 N  <- det  646 N   (exactly -54: matches)  N -> N
#                  det  760 V   (60 from 700: too far)  false detection O -> V
#   ref 1000 S     (no detection)                       S -> O  (missed)
#   ref 1300 N  <- det 1290 S   (10 away, nearest)      N -> S
#                  det 1320 N   (20 away, second)       false detection O -> N
#                  det 1600 F   (nothing near)          false detection O -> F
#   ref 1900 Q  <- det 1905 V                           Q -> V  (QRS only)
REF = [100, 400, 700, 1000, 1300, 1900]
REF_LABELS = ["N", "V", "N", "S", "N", "Q"]
DET = [110, 454, 646, 760, 1290, 1320, 1600, 1905]
DET_LABELS = ["N", "V", "N", "V", "S", "N", "F", "V"]


def _hand_score(**kwargs: object) -> RecordScore:
    return score_record("hand", FS, REF, REF_LABELS, DET, DET_LABELS, skip_s=0.0, **kwargs)


def _matrix(**rows: dict[str, int]) -> dict[str, dict[str, int]]:
    matrix = {r: dict.fromkeys(DETECTION_COLUMNS, 0) for r in REFERENCE_ROWS}
    for row, cells in rows.items():
        matrix[row].update(cells)
    return matrix


def test_hand_made_record_counts_and_confusion() -> None:
    score = _hand_score()
    assert (score.qrs_tp, score.qrs_fn, score.qrs_fp) == (5, 1, 3)
    assert (score.n_reference, score.n_detected) == (6, 8)
    assert score.confusion == _matrix(
        N={"N": 2, "S": 1}, S={"O": 1}, V={"V": 1}, Q={"V": 1}, O={"N": 1, "V": 1, "F": 1}
    )


def test_hand_made_record_metrics() -> None:
    score = _hand_score()
    qrs = qrs_metrics([score])
    assert qrs.se == pytest.approx(5 / 6)  # 5 TP / (5 TP + 1 FN)
    assert qrs.ppv == pytest.approx(5 / 8)  # 5 TP / (5 TP + 3 FP)

    classes = class_metrics([score])
    # N: TP 2; row N = 2 + 1 (as S) = 3; column N = 2 (N row) + 1 (O row) = 3
    assert classes["N"].se == pytest.approx(2 / 3)
    assert classes["N"].ppv == pytest.approx(2 / 3)
    # S: TP 0; row S = 1 (missed); column S = 1 (the N beat called S)
    assert classes["S"] == SePp(se=0.0, ppv=0.0)
    # V: TP 1; row V = 1; column V = 1 (V row) + 1 (O row); the Q row's V is not counted
    assert classes["V"].se == pytest.approx(1.0)
    assert classes["V"].ppv == pytest.approx(1 / 2)
    # F: no reference F beats (0/0); column F = 1 false detection
    assert math.isnan(classes["F"].se)
    assert classes["F"].ppv == 0.0
    # F1: N 2/3, S 0, V 2*1*0.5/1.5 = 2/3, F 0 (undefined Se) -> (2/3 + 2/3) / 4 = 1/3
    assert macro_f1(classes) == pytest.approx(1 / 3)


def test_predicted_label_outside_scored_classes_is_column_q() -> None:
    score = score_record("q", FS, [100], ["N"], [100], ["?"], skip_s=0.0)
    assert score.confusion["N"]["Q"] == 1


@pytest.mark.parametrize(
    ("offset", "matched"),
    [(TOL, True), (-TOL, True), (TOL + 1, False), (-TOL - 1, False), (0, True)],
)
def test_tolerance_is_inclusive(offset: int, matched: bool) -> None:
    match = match_beats(np.array([1000]), np.array([1000 + offset]), TOL)
    assert match.ref_index.tolist() == ([0] if matched else [])
    assert match.unmatched_det.tolist() == ([] if matched else [0])


def test_two_detections_near_one_beat_only_nearest_matches() -> None:
    match = match_beats(np.array([1000]), np.array([980, 1010]), TOL)
    assert match.ref_index.tolist() == [0]
    assert match.det_index.tolist() == [1]
    assert match.unmatched_det.tolist() == [0]


@pytest.mark.parametrize(
    ("det", "winner"),
    [([150], 1), ([130], 0)],  # 150: 50 from 100, 30 from 180; 130: 30 from 100, 50 from 180
)
def test_detection_between_two_beats_goes_to_the_closer(det: list[int], winner: int) -> None:
    match = match_beats(np.array([100, 180]), np.array(det), TOL)
    assert match.ref_index.tolist() == [winner]
    assert match.unmatched_ref.tolist() == [1 - winner]
    assert match.unmatched_det.size == 0


def test_detection_between_two_beats_other_beat_takes_another_detection() -> None:
    match = match_beats(np.array([100, 180]), np.array([95, 150]), TOL)
    assert list(zip(match.ref_index.tolist(), match.det_index.tolist(), strict=True)) == [
        (0, 0),
        (1, 1),
    ]


def test_equidistant_detection_goes_to_the_earlier_beat() -> None:
    match = match_beats(np.array([100, 200]), np.array([150]), TOL)
    assert match.ref_index.tolist() == [0]


def test_empty_inputs() -> None:
    match = match_beats(np.array([]), np.array([]), TOL)
    assert all(a.size == 0 for a in (match.ref_index, match.det_index))
    match = match_beats(np.array([5, 9]), np.array([], dtype=np.int64), TOL)
    assert match.unmatched_ref.tolist() == [0, 1]
    match = match_beats(np.array([], dtype=np.int64), np.array([5]), TOL)
    assert match.unmatched_det.tolist() == [0]


@pytest.mark.parametrize(("ref", "det"), [([300, 100], [100, 300]), ([100, 300], [300, 100])])
def test_unsorted_input_raises(ref: list[int], det: list[int]) -> None:
    with pytest.raises(ValueError, match="sorted"):
        match_beats(np.array(ref), np.array(det), TOL)
    with pytest.raises(ValueError, match="sorted"):
        score_record("r", FS, ref, ["N", "N"], det, ["N", "N"], skip_s=0.0)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="labels"):
        score_record("r", FS, [100, 200], ["N"], [], [], skip_s=0.0)
    with pytest.raises(ValueError, match="AAMI"):
        score_record("r", FS, [100], ["A"], [], [], skip_s=0.0)
    with pytest.raises(ValueError, match="whole"):
        match_beats(np.array([1.5]), np.array([1.0]), TOL)
    with pytest.raises(ValueError, match="tolerance"):
        match_beats(np.array([1]), np.array([1]), -1)


SKIP = 108_000  # 300 s at 360 Hz


@pytest.mark.parametrize(
    ("ref", "det", "counted"),
    [
        ([SKIP + 10], [SKIP - 10], True),  # reference scored: the pair counts
        ([SKIP - 10], [SKIP + 10], False),  # reference in the skip: neither a TP nor an FP
    ],
)
def test_pair_straddling_the_skip_point(ref: list[int], det: list[int], counted: bool) -> None:
    score = score_record("skip", FS, ref, ["N"], det, ["N"])
    assert (score.qrs_tp, score.qrs_fn, score.qrs_fp) == ((1, 0, 0) if counted else (0, 0, 0))
    assert score.confusion["N"]["N"] == int(counted)
    assert score.n_detected == int(counted)


def test_skip_ignores_everything_before_five_minutes() -> None:
    ref = [50_000, 70_000, SKIP + 500, SKIP + 5_000]
    det = [50_010, 60_000, SKIP + 510, SKIP + 9_000]
    score = score_record("skip", FS, ref, ["N", "V", "N", "S"], det, ["N", "N", "V", "N"])
    # scored: SKIP+500 N -> V (TP), SKIP+5000 S missed (FN), SKIP+9000 false (FP)
    assert (score.qrs_tp, score.qrs_fn, score.qrs_fp) == (1, 1, 1)
    assert score.n_reference == 2
    assert score.confusion == _matrix(N={"V": 1}, S={"O": 1}, O={"N": 1})


def test_paced_record_counts_for_qrs_only() -> None:
    good = score_record("100", FS, [100, 500], ["N", "V"], [100, 500], ["N", "V"], skip_s=0.0)
    paced = score_record(
        "102",
        FS,
        [100, 500, 900],
        ["Q", "Q", "N"],
        [100, 500],
        ["V", "V"],
        skip_s=0.0,
        score_classes=False,
    )
    qrs = qrs_metrics([good, paced])
    assert qrs.se == pytest.approx(4 / 5)  # TP 2 + 2, FN 0 + 1
    assert qrs.ppv == 1.0  # no false detections
    classes = class_metrics([good, paced])
    assert classes["N"] == SePp(1.0, 1.0)  # the paced record's missed N is not counted
    assert classes["V"] == SePp(1.0, 1.0)
    assert merge_confusion([good, paced])["N"]["O"] == 1  # merge_confusion does not filter

    report = evaluation_report([good, paced])
    assert report["records"]["102"]["paced"] is True
    assert "classes" not in report["records"]["102"]
    assert "macro_f1" not in report["records"]["102"]
    assert report["records"]["100"]["paced"] is False
    assert report["macro_f1"] == pytest.approx(0.5)  # N and V F1 1, S and F undefined -> 0


def test_empty_detections_give_zero_se_and_null_ppv() -> None:
    score = score_record("e", FS, [100, 500], ["N", "N"], [], [], skip_s=0.0)
    assert (score.qrs_tp, score.qrs_fn, score.qrs_fp) == (0, 2, 0)
    qrs = qrs_metrics([score])
    assert qrs.se == 0.0
    assert math.isnan(qrs.ppv)
    report = json.loads(json.dumps(evaluation_report([score]), allow_nan=False))
    assert report["qrs"] == {"se": 0.0, "ppv": None}
    assert report["classes"]["N"] == {"se": 0.0, "ppv": None}


def test_no_scores_at_all_is_undefined() -> None:
    assert math.isnan(qrs_metrics([]).se)
    assert macro_f1(class_metrics([])) == 0.0


def test_evaluation_report_shape() -> None:
    paced = score_record("102", FS, [100], ["Q"], [100], ["N"], skip_s=0.0, score_classes=False)
    report = evaluation_report([_hand_score(), paced])
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert report["classes"]["F"] == {"se": None, "ppv": 0.0}
    assert set(report) == {"qrs", "classes", "macro_f1", "records"}
    assert set(report["qrs"]) == {"se", "ppv"}
    assert set(report["classes"]) == {"N", "S", "V", "F"}
    assert all(set(v) == {"se", "ppv"} for v in report["classes"].values())
    assert set(report["records"]) == {"hand", "102"}
    assert set(report["records"]["hand"]) == {
        "qrs",
        "classes",
        "macro_f1",
        "confusion",
        "n_reference",
        "n_detected",
        "paced",
    }
    assert set(report["records"]["102"]) == {
        "qrs",
        "confusion",
        "n_reference",
        "n_detected",
        "paced",
    }
    hand = report["records"]["hand"]
    assert hand["confusion"]["Q"]["V"] == 1
    assert set(hand["confusion"]) == set(REFERENCE_ROWS)
    assert hand["qrs"] == {"se": pytest.approx(5 / 6), "ppv": pytest.approx(5 / 8)}
    assert hand["macro_f1"] == pytest.approx(1 / 3)


def test_evaluation_report_rejects_duplicate_records() -> None:
    with pytest.raises(ValueError, match="twice"):
        evaluation_report([_hand_score(), _hand_score()])


def test_tables_render() -> None:
    paced = score_record("102", FS, [100], ["Q"], [100], ["N"], skip_s=0.0, score_classes=False)
    console = Console(width=200, record=True)
    console.print(ec57_table([_hand_score(), paced], "EC57"))
    console.print(confusion_table(_hand_score().confusion))
    text = console.export_text()
    assert "gross" in text
    assert "83.33" in text and "62.50" in text  # hand QRS Se 5/6, +P 5/8
    paced_row = next(line for line in text.splitlines() if "102" in line)
    assert paced_row.count("-") == 9  # 8 class cells and macro-F1


def _greedy_reference(ref: list[int], det: list[int], tol: int) -> set[tuple[int, int]]:
    """Brute force of the documented rule: closest pairs first, ties by reference then detection."""
    edges = sorted(
        (abs(r - d), i, j)
        for i, r in enumerate(ref)
        for j, d in enumerate(det)
        if abs(r - d) <= tol
    )
    used_ref: set[int] = set()
    used_det: set[int] = set()
    pairs = set()
    for _, i, j in edges:
        if i not in used_ref and j not in used_det:
            used_ref.add(i)
            used_det.add(j)
            pairs.add((i, j))
    return pairs


@settings(max_examples=200, deadline=None)
@given(
    ref=st.lists(st.integers(0, 3000), max_size=40).map(sorted),
    det=st.lists(st.integers(0, 3000), max_size=40).map(sorted),
    tol=st.integers(0, 120),
)
def test_matching_invariants(ref: list[int], det: list[int], tol: int) -> None:
    match = match_beats(np.array(ref, dtype=np.int64), np.array(det, dtype=np.int64), tol)
    pairs = set(zip(match.ref_index.tolist(), match.det_index.tolist(), strict=True))
    assert pairs == _greedy_reference(ref, det, tol)
    assert sorted([*match.ref_index.tolist(), *match.unmatched_ref.tolist()]) == list(
        range(len(ref))
    )
    assert sorted([*match.det_index.tolist(), *match.unmatched_det.tolist()]) == list(
        range(len(det))
    )
    # maximal: no leftover beat and leftover detection are within tolerance of each other
    for i in match.unmatched_ref.tolist():
        assert all(abs(ref[i] - det[j]) > tol for j in match.unmatched_det.tolist())


@st.composite
def _jittered_record(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    gaps = draw(st.lists(st.integers(round(0.3 * FS), round(2.0 * FS)), min_size=1, max_size=60))
    ref = np.cumsum(gaps).astype(np.int64)
    jitter = draw(st.lists(st.integers(-TOL, TOL), min_size=ref.size, max_size=ref.size))
    return ref, ref + np.array(jitter, dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(record=_jittered_record(), data=st.data())
def test_jittered_detections_all_match_then_drop_and_add(
    record: tuple[np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    ref, det = record
    det = np.sort(det)  # jitter may swap neighbours only when they touch; stay sorted
    labels = ["N"] * ref.size
    score = score_record("p", FS, ref, labels, det, ["N"] * det.size, skip_s=0.0)
    assert (score.qrs_tp, score.qrs_fn, score.qrs_fp) == (ref.size, 0, 0)

    keep = np.array(data.draw(st.lists(st.booleans(), min_size=det.size, max_size=det.size)))
    # false detections farther than the tolerance from every reference beat
    gaps = np.diff(ref)
    spots = [int(a + g // 2) for a, g in zip(ref[:-1], gaps, strict=True) if g >= 2 * TOL + 2]
    spots += [int(ref[-1]) + TOL + 1 + 500 * k for k in range(3)]
    extra = data.draw(st.lists(st.sampled_from(spots), unique=True, max_size=len(spots)))
    new_det = np.sort(np.concatenate([det[keep], np.array(extra, dtype=np.int64)]))
    score = score_record("p", FS, ref, labels, new_det, ["N"] * new_det.size, skip_s=0.0)
    n_kept = int(keep.sum())
    assert (score.qrs_tp, score.qrs_fn, score.qrs_fp) == (n_kept, ref.size - n_kept, len(extra))


def test_matching_a_long_record() -> None:
    rng = np.random.default_rng(7)
    ref = np.cumsum(rng.integers(round(0.3 * FS), round(1.5 * FS), 30_000))
    det = np.sort(np.concatenate([ref + rng.integers(-TOL, TOL + 1, ref.size), ref[::7] + 20]))
    match = match_beats(ref, det, TOL)
    assert match.unmatched_ref.size == 0
    assert match.unmatched_det.size == ref[::7].size
