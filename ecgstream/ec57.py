"""ANSI/AAMI EC57 beat-by-beat scoring of a detector against reference annotations.

Pure numpy: the caller maps annotation symbols to the AAMI classes (N, S, V, F, Q) first. Reference
Q beats count for QRS detection only. Gross statistics pool the counts of all records before
dividing, as EC57 asks, so a record with many beats weighs more than a short one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.table import Table

SCORED_CLASSES: tuple[str, ...] = ("N", "S", "V", "F")
REFERENCE_ROWS: tuple[str, ...] = (*SCORED_CLASSES, "Q", "O")
DETECTION_COLUMNS: tuple[str, ...] = (*SCORED_CLASSES, "Q", "O")
NO_BEAT = "O"  # row: a false detection (no reference beat); column: a missed beat (no detection)


@dataclass(frozen=True)
class BeatMatch:
    """The pairing of reference beats with detections; every index appears exactly once."""

    ref_index: np.ndarray
    det_index: np.ndarray
    unmatched_ref: np.ndarray
    unmatched_det: np.ndarray


def _samples(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold whole sample numbers")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be numeric sample numbers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if np.any(np.diff(array) < 0):
        raise ValueError(f"{name} must be sorted in non-decreasing order")
    return array


def match_beats(ref_samples: np.ndarray, det_samples: np.ndarray, tolerance: int) -> BeatMatch:
    """One-to-one matching in time order, like WFDB's bxb: each reference beat is matched to the
    nearest unmatched detection within +-tolerance samples; a detection is used at most once.

    Pairs are accepted closest first over the whole record (ties: earlier reference, then earlier
    detection), so a detection between two beats goes to the closer one and a second detection near
    a beat is a false detection. Only candidate pairs within tolerance are built (found with
    searchsorted), so the cost is O((n + m) log(n + m)) for any plausible detector.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 samples, got {tolerance}")
    ref = _samples(ref_samples, "ref_samples")
    det = _samples(det_samples, "det_samples")
    lo = np.searchsorted(det, ref - tolerance, side="left")
    hi = np.searchsorted(det, ref + tolerance, side="right")
    counts = hi - lo
    cand_ref = np.repeat(np.arange(ref.size, dtype=np.int64), counts)
    # det indices lo[i], lo[i]+1, ..., hi[i]-1 for each reference beat i, without a python loop
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    cand_det = starts + np.arange(cand_ref.size, dtype=np.int64)
    distance = np.abs(ref[cand_ref] - det[cand_det])
    order = np.lexsort((cand_det, cand_ref, distance))

    ref_used = np.zeros(ref.size, dtype=bool)
    det_used = np.zeros(det.size, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for r, d in zip(cand_ref[order].tolist(), cand_det[order].tolist(), strict=True):
        if not ref_used[r] and not det_used[d]:
            ref_used[r] = det_used[d] = True
            pairs.append((r, d))
    pairs.sort()
    matched = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return BeatMatch(
        ref_index=matched[:, 0].copy(),
        det_index=matched[:, 1].copy(),
        unmatched_ref=np.flatnonzero(~ref_used).astype(np.int64),
        unmatched_det=np.flatnonzero(~det_used).astype(np.int64),
    )


@dataclass(frozen=True)
class RecordScore:
    """One record's EC57 counts; only counts are kept so records pool into gross figures."""

    record: str
    n_reference: int
    n_detected: int
    qrs_tp: int
    qrs_fn: int
    qrs_fp: int
    confusion: dict[str, dict[str, int]]
    score_classes: bool


def empty_confusion() -> dict[str, dict[str, int]]:
    """All-zero matrix with every row and column present, so consumers never miss a key."""
    return {row: dict.fromkeys(DETECTION_COLUMNS, 0) for row in REFERENCE_ROWS}


def _labels(values: Any, n: int, name: str) -> list[str]:
    labels = [str(label) for label in np.asarray(values, dtype=object).reshape(-1)]
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} labels for {n} beats")
    return labels


def _detection_column(label: str) -> str:
    # anything the detector says that is not a scored class counts as unclassifiable
    return label if label in SCORED_CLASSES else "Q"


def score_record(
    record: str,
    fs: float,
    ref_samples: np.ndarray,
    ref_labels: Sequence[str] | np.ndarray,
    det_samples: np.ndarray,
    det_labels: Sequence[str] | np.ndarray,
    *,
    tolerance_s: float = 0.150,
    skip_s: float = 300.0,
    score_classes: bool = True,
) -> RecordScore:
    """EC57: beats before skip_s are not scored (neither reference nor detection); match within
    tolerance_s.

    Matching runs on the whole record and the skip is applied afterwards, as bxb does, so a beat
    just after the skip point keeps the detection that fell just before it. A pair counts when its
    reference beat is scored; `n_detected` is therefore the detections that took part in scoring
    (TP + FP), which can differ by one from a plain count of detections after the skip point.
    """
    if fs <= 0:
        raise ValueError(f"fs must be positive, got {fs}")
    ref = _samples(ref_samples, "ref_samples")
    det = _samples(det_samples, "det_samples")
    ref_lab = _labels(ref_labels, ref.size, "ref_labels")
    det_lab = _labels(det_labels, det.size, "det_labels")
    unknown = sorted(set(ref_lab) - set(REFERENCE_ROWS[:-1]))
    if unknown:
        raise ValueError(f"reference labels must be AAMI classes N, S, V, F, Q; got {unknown}")

    match = match_beats(ref, det, round(tolerance_s * fs))
    skip = skip_s * fs
    confusion = empty_confusion()
    tp = fn = fp = 0
    for r, d in zip(match.ref_index.tolist(), match.det_index.tolist(), strict=True):
        if ref[r] >= skip:
            confusion[ref_lab[r]][_detection_column(det_lab[d])] += 1
            tp += 1
    for r in match.unmatched_ref.tolist():
        if ref[r] >= skip:
            confusion[ref_lab[r]][NO_BEAT] += 1
            fn += 1
    for d in match.unmatched_det.tolist():
        if det[d] >= skip:
            confusion[NO_BEAT][_detection_column(det_lab[d])] += 1
            fp += 1
    return RecordScore(
        record=record,
        n_reference=tp + fn,
        n_detected=tp + fp,
        qrs_tp=tp,
        qrs_fn=fn,
        qrs_fp=fp,
        confusion=confusion,
        score_classes=score_classes,
    )


@dataclass(frozen=True)
class SePp:
    """Sensitivity and positive predictivity; nan where the denominator is zero."""

    se: float
    ppv: float


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def qrs_metrics(scores: Iterable[RecordScore]) -> SePp:
    """Gross QRS detection Se/+P over all records, paced ones included."""
    tp = fn = fp = 0
    for score in scores:
        tp += score.qrs_tp
        fn += score.qrs_fn
        fp += score.qrs_fp
    return SePp(se=_ratio(tp, tp + fn), ppv=_ratio(tp, tp + fp))


def merge_confusion(scores: Iterable[RecordScore]) -> dict[str, dict[str, int]]:
    """Cell-wise sum of the records' matrices (all given records: filter paced ones first)."""
    total = empty_confusion()
    for score in scores:
        for row, columns in score.confusion.items():
            for column, count in columns.items():
                total[row][column] += count
    return total


def _class_metrics(confusion: Mapping[str, Mapping[str, int]]) -> dict[str, SePp]:
    metrics = {}
    for c in SCORED_CLASSES:
        tp = confusion[c][c]
        row = sum(confusion[c].values())
        # detections matched to reference Q beats are neither right nor wrong for class scoring
        column = sum(confusion[r][c] for r in REFERENCE_ROWS if r != "Q")
        metrics[c] = SePp(se=_ratio(tp, row), ppv=_ratio(tp, column))
    return metrics


def class_metrics(scores: Iterable[RecordScore]) -> dict[str, SePp]:
    """Gross per-class Se/+P over the records whose classes are scored (paced ones are not)."""
    return _class_metrics(merge_confusion(s for s in scores if s.score_classes))


def _f1(metric: SePp) -> float:
    if math.isnan(metric.se) or math.isnan(metric.ppv) or metric.se + metric.ppv == 0:
        return 0.0
    return 2 * metric.se * metric.ppv / (metric.se + metric.ppv)


def macro_f1(classes: dict[str, SePp]) -> float:
    """Mean F1 over N, S, V, F; an undefined class counts as 0 so a detector cannot hide a class."""
    return sum(_f1(classes[c]) for c in SCORED_CLASSES) / len(SCORED_CLASSES)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _sepp_json(metric: SePp) -> dict[str, float | None]:
    return {"se": _number(metric.se), "ppv": _number(metric.ppv)}


def _classes_json(classes: dict[str, SePp]) -> dict[str, dict[str, float | None]]:
    return {c: _sepp_json(classes[c]) for c in SCORED_CLASSES}


def evaluation_report(scores: list[RecordScore]) -> dict[str, Any]:
    """The JSON of `ecgstream evaluate`. Exactly:
    {"qrs": {"se": .., "ppv": ..}, "classes": {"N": {"se": .., "ppv": ..}, "S": {..}, "V": {..},
     "F": {..}}, "macro_f1": .., "records": {"<record>": {"qrs": {...}, "classes": {...} (only if
     score_classes), "macro_f1": .. (only if score_classes), "confusion": {...}, "n_reference": ..,
     "n_detected": .., "paced": bool}}}
    NaN becomes null (JSON has no NaN)."""
    names = [s.record for s in scores]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"records scored twice: {duplicates}")
    classes = class_metrics(scores)
    records: dict[str, Any] = {}
    for score in scores:
        entry: dict[str, Any] = {"qrs": _sepp_json(qrs_metrics([score]))}
        if score.score_classes:
            own = _class_metrics(score.confusion)
            entry["classes"] = _classes_json(own)
            entry["macro_f1"] = macro_f1(own)
        entry["confusion"] = {row: dict(cols) for row, cols in score.confusion.items()}
        entry["n_reference"] = score.n_reference
        entry["n_detected"] = score.n_detected
        entry["paced"] = not score.score_classes
        records[score.record] = entry
    return {
        "qrs": _sepp_json(qrs_metrics(scores)),
        "classes": _classes_json(classes),
        "macro_f1": macro_f1(classes),
        "records": records,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _table_cells(qrs: SePp, classes: dict[str, SePp] | None, f1: float | None) -> list[str]:
    cells = [_percent(qrs.se), _percent(qrs.ppv)]
    for c in SCORED_CLASSES:
        metric = classes[c] if classes is not None else SePp(math.nan, math.nan)
        cells += [_percent(metric.se), _percent(metric.ppv)]
    return [*cells, _percent(f1)]


def ec57_table(scores: list[RecordScore], title: str) -> Table:
    """The familiar EC57 summary: one row per record and the gross row last, in percent."""
    table = Table(title=title)
    table.add_column("record")
    table.add_column("beats", justify="right")
    for name in ("QRS", *SCORED_CLASSES):
        table.add_column(f"{name} Se", justify="right")
        table.add_column(f"{name} +P", justify="right")
    table.add_column("macro-F1", justify="right")
    for score in scores:
        own = _class_metrics(score.confusion) if score.score_classes else None
        f1 = macro_f1(own) if own is not None else None
        table.add_row(
            score.record, str(score.n_reference), *_table_cells(qrs_metrics([score]), own, f1)
        )
    table.add_section()
    gross = class_metrics(scores)
    gross_f1 = macro_f1(gross) if any(s.score_classes for s in scores) else None
    table.add_row(
        "gross",
        str(sum(s.n_reference for s in scores)),
        *_table_cells(qrs_metrics(scores), gross, gross_f1),
        style="bold",
    )
    return table


def confusion_table(
    confusion: Mapping[str, Mapping[str, int]],
    *,
    title: str = "confusion (O: no beat)",
) -> Table:
    """The matrix as printed counts, so misclassifications can be read off the terminal."""
    table = Table(title=title)
    table.add_column("ref \\ det")
    for column in DETECTION_COLUMNS:
        table.add_column(column, justify="right")
    for row in REFERENCE_ROWS:
        table.add_row(row, *(str(confusion.get(row, {}).get(c, 0)) for c in DETECTION_COLUMNS))
    return table
