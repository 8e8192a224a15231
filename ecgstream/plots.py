"""PNG figures for evaluation reports: the confusion matrix and annotated ECG strips.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas rather than pyplot, so no
display, global figure registry or backend switch is involved and nothing leaks between calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ecgstream.ec57 import DETECTION_COLUMNS, REFERENCE_ROWS, match_beats

CLASS_COLOURS: dict[str, str] = {
    "N": "#6e6e6e",
    "S": "#ff8c00",
    "V": "#d62728",
    "F": "#8e44ad",
    "Q": "#1f77b4",
}
OTHER_COLOUR = "#1f77b4"  # labels outside the AAMI classes are drawn like Q
ROW_SECONDS = 10.0
MATCH_TOLERANCE_S = 0.150


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=110)
    figure.clear()
    return path


def plot_confusion(confusion: Mapping[str, Mapping[str, int]], path: Path, title: str) -> Path:
    """Heat map coloured by row share, so rare classes (S, F) read as well as N; counts on top."""
    counts = np.array(
        [[confusion.get(r, {}).get(c, 0) for c in DETECTION_COLUMNS] for r in REFERENCE_ROWS],
        dtype=np.int64,
    )
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    figure = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, label="share of reference row")
    ax.set_xticks(range(len(DETECTION_COLUMNS)), labels=DETECTION_COLUMNS)
    ax.set_yticks(range(len(REFERENCE_ROWS)), labels=REFERENCE_ROWS)
    ax.set_xlabel("detection (O: missed beat)")
    ax.set_ylabel("reference (O: false detection)")
    ax.set_title(title)
    for i in range(len(REFERENCE_ROWS)):
        for j in range(len(DETECTION_COLUMNS)):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=9,
                color="white" if share[i, j] > 0.6 else "black",
            )
    return _save(figure, path)


def _ecg_grid(ax: Axes, t0: float, t1: float, y0: float, y1: float) -> None:
    # ECG paper at 25 mm/s and 10 mm/mV: 1 mm = 0.04 s = 0.1 mV, 5 mm = 0.2 s = 0.5 mV
    for step, width in ((0.04, 0.3), (0.2, 0.8)):
        ax.vlines(
            np.arange(math.ceil(t0 / step) * step, t1, step), y0, y1, colors="#f4b6b6", lw=width
        )
    for step, width in ((0.1, 0.3), (0.5, 0.8)):
        ax.hlines(
            np.arange(math.ceil(y0 / step) * step, y1, step), t0, t1, colors="#f4b6b6", lw=width
        )


def _mismatches(
    fs: float,
    ref_samples: np.ndarray,
    ref_labels: Sequence[str] | np.ndarray,
    det_samples: np.ndarray,
    det_labels: Sequence[str] | np.ndarray,
) -> tuple[set[int], set[int]]:
    """Reference and detection indices to highlight: unmatched beats and disagreeing labels."""
    match = match_beats(ref_samples, det_samples, round(MATCH_TOLERANCE_S * fs))
    bad_ref = set(match.unmatched_ref.tolist())
    bad_det = set(match.unmatched_det.tolist())
    for r, d in zip(match.ref_index.tolist(), match.det_index.tolist(), strict=True):
        if str(ref_labels[r]) != str(det_labels[d]):
            bad_ref.add(r)
            bad_det.add(d)
    return bad_ref, bad_det


def _beat_labels(
    ax: Axes,
    fs: float,
    samples: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    highlight: set[int],
    window: tuple[int, int],
    y: float,
) -> None:
    inside = np.flatnonzero((samples >= window[0]) & (samples < window[1]))
    for index in inside.tolist():
        label = str(labels[index])
        colour = CLASS_COLOURS.get(label, OTHER_COLOUR)
        box = (
            {"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour, "lw": 1.2}
            if index in highlight
            else None
        )
        ax.text(
            samples[index] / fs,
            y,
            label,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            color=colour,
            bbox=box,
        )


def plot_strip(
    signal_mv: np.ndarray,
    fs: float,
    path: Path,
    *,
    title: str,
    start_s: float,
    duration_s: float,
    ref_samples: np.ndarray,
    ref_labels: Sequence[str] | np.ndarray,
    det_samples: np.ndarray,
    det_labels: Sequence[str] | np.ndarray,
    alarms: Sequence[tuple[float, float, str]] = (),
) -> Path:
    """An ECG strip with detected labels above the trace and reference labels below, so a
    disagreement is visible at a glance (boxed: unmatched beats and differing labels). Rows hold
    10 s each; alarms are (start_s, end_s, text) spans shaded across the rows they cover.
    """
    signal = np.asarray(signal_mv, dtype=np.float64).reshape(-1)
    if fs <= 0 or duration_s <= 0:
        raise ValueError("fs and duration_s must be positive")
    first = max(0, round(start_s * fs))
    last = min(signal.size, round((start_s + duration_s) * fs))
    if first >= last:
        raise ValueError(
            f"strip {start_s}..{start_s + duration_s} s lies outside the signal "
            f"({signal.size / fs:.1f} s)"
        )
    ref = np.asarray(ref_samples, dtype=np.int64).reshape(-1)
    det = np.asarray(det_samples, dtype=np.int64).reshape(-1)
    if len(ref_labels) != ref.size or len(det_labels) != det.size:
        raise ValueError("each beat needs exactly one label")
    bad_ref, bad_det = _mismatches(fs, ref, ref_labels, det, det_labels)

    n_rows = math.ceil((last - first) / (ROW_SECONDS * fs))
    row_s = min(ROW_SECONDS, (last - first) / fs)
    figure = Figure(figsize=(max(6.0, 1.6 * row_s), 2.6 * n_rows + 0.6), layout="constrained")
    axes = figure.subplots(n_rows, 1, squeeze=False)[:, 0]
    for row, ax in enumerate(axes):
        a = first + round(row * ROW_SECONDS * fs)
        b = min(last, first + round((row + 1) * ROW_SECONDS * fs))
        t = np.arange(a, b) / fs
        segment = signal[a:b]
        low, high = float(np.min(segment)), float(np.max(segment))
        pad = max(0.3, 0.1 * (high - low))
        # head room above and below the trace for the two label lines
        y0, y1 = (
            low - pad - 0.35 * (high - low + 2 * pad),
            high + pad + 0.35 * (high - low + 2 * pad),
        )
        t0, t1 = a / fs, a / fs + row_s
        _ecg_grid(ax, t0, t1, y0, y1)
        for alarm_start, alarm_end, text in alarms:
            lo, hi = max(alarm_start, t0), min(alarm_end, t1)
            if lo < hi:
                ax.axvspan(lo, hi, color="#ffd54f", alpha=0.35, lw=0)
                ax.text(lo, 0.72, text, transform=ax.get_xaxis_transform(), fontsize=8, va="top")
        ax.plot(t, segment, color="black", lw=0.8)
        _beat_labels(ax, fs, det, det_labels, bad_det, (a, b), 0.92)
        _beat_labels(ax, fs, ref, ref_labels, bad_ref, (a, b), 0.08)
        ax.set_xlim(t0, t1)
        ax.set_ylim(y0, y1)
        ax.set_ylabel("mV")
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("time (s)   labels: detection above the trace, reference below")
    figure.suptitle(title)
    return _save(figure, path)


def plot_gate_power(points: Sequence[Mapping[str, object]], path: Path, power: float) -> Path:
    """Pass rate against the candidate's macro-F1 gain, one line per evidence pair and number
    of patients: the gate's power curve (gain > 0) and false-pass rate (gain <= 0)."""
    figure = Figure(figsize=(8, 4.5))
    ax = figure.add_subplot()
    lines = sorted({(str(p["pair"]), int(str(p["patients"]))) for p in points})
    for pair, patients in lines:
        rows = sorted(
            (p for p in points if p["pair"] == pair and int(str(p["patients"])) == patients),
            key=lambda p: float(str(p["macro_f1_gain"])),
        )
        ax.plot(
            [float(str(p["macro_f1_gain"])) for p in rows],
            [float(str(p["pass_rate"])) for p in rows],
            marker="o",
            linestyle="-" if patients >= 10 else "--",
            label=f"{pair}, {patients} patients",
        )
    ax.axhline(power, color="#2ca02c", linewidth=0.8, linestyle=":")
    ax.axhline(0.05, color="#d62728", linewidth=0.8, linestyle=":")
    ax.axvline(0, color="#6e6e6e", linewidth=0.8)
    ax.set_xlabel("candidate's macro-F1 gain over production (population)")
    ax.set_ylabel("share of simulated releases passed")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Release gate: power and false-pass rate on real EC57 scores")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def plot_scaling_timeline(
    timeline: Sequence[Mapping[str, float]], path: Path, load_s: float, title: str
) -> Path:
    """Consumers, classifier replicas and the most-behind lag (seconds of input) over a load
    step: what the pool's autoscaling did and why."""
    figure = Figure(figsize=(8, 4))
    ax = figure.add_subplot()
    t = [p["t_s"] for p in timeline]
    ax.axvspan(0, load_s, color="#ffe8cc", label="load step")
    ax.step(t, [p["consumers"] for p in timeline], where="post", label="consumers")
    ax.step(t, [p["replicas"] for p in timeline], where="post", linestyle="--",
            label="classifier replicas")  # fmt: skip
    ax.set_xlabel("seconds since the step")
    ax.set_ylabel("actors")
    ax.set_ylim(0, max(max(p["consumers"], p["replicas"]) for p in timeline) + 1)
    lag = ax.twinx()
    lag.plot(t, [p["worst_lag_s"] for p in timeline], color="#d62728", linewidth=1,
             label="most-behind lag (s of input)")  # fmt: skip
    lag.set_ylabel("lag (s)")
    handles = ax.get_legend_handles_labels()[0] + lag.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.set_title(title)
    figure.tight_layout()
    return _save(figure, path)
