"""The report figures: real PNG files come out, headless, for ordinary and awkward inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgstream.ec57 import score_record
from ecgstream.plots import plot_confusion, plot_strip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FS = 360.0


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # a rendered figure, not an empty canvas


def _synthetic_ecg(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(round(seconds * FS)) / FS
    beats = np.arange(0.4, seconds, 0.8)
    signal = sum(1.2 * np.exp(-(((t - b) / 0.012) ** 2)) for b in beats)
    return np.asarray(signal) + 0.05 * np.sin(2 * np.pi * 0.3 * t), np.round(beats * FS).astype(
        np.int64
    )


def test_plot_confusion_writes_png(tmp_path: Path) -> None:
    score = score_record(
        "r", FS, [100, 400, 700], ["N", "V", "S"], [100, 410, 900], ["N", "N", "F"], skip_s=0.0
    )
    path = plot_confusion(score.confusion, tmp_path / "out" / "confusion.png", "record r")
    assert path == tmp_path / "out" / "confusion.png"
    _assert_png(path)


def test_plot_confusion_all_zero(tmp_path: Path) -> None:
    _assert_png(plot_confusion({}, tmp_path / "empty.png", "nothing scored"))


@pytest.mark.parametrize("duration_s", [8.0, 25.0])
def test_plot_strip_writes_png(tmp_path: Path, duration_s: float) -> None:
    signal, beats = _synthetic_ecg(40.0)
    ref_labels = ["V" if i % 5 == 2 else "N" for i in range(beats.size)]
    det = np.concatenate([beats[:10], beats[11:] + 5, [beats[-1] + 150]])
    det_labels = ["N"] * det.size
    path = plot_strip(
        signal,
        FS,
        tmp_path / f"strip-{duration_s}.png",
        title="synthetic",
        start_s=2.0,
        duration_s=duration_s,
        ref_samples=beats,
        ref_labels=ref_labels,
        det_samples=det,
        det_labels=det_labels,
        alarms=[(4.0, 9.5, "VT"), (60.0, 70.0, "outside")],
    )
    _assert_png(path)


def test_plot_strip_without_beats_and_past_the_end(tmp_path: Path) -> None:
    signal, _ = _synthetic_ecg(12.0)
    empty = np.zeros(0, dtype=np.int64)
    path = plot_strip(
        signal,
        FS,
        tmp_path / "tail.png",
        title="tail",
        start_s=5.0,
        duration_s=30.0,  # runs past the signal: clipped, not an error
        ref_samples=empty,
        ref_labels=[],
        det_samples=empty,
        det_labels=[],
    )
    _assert_png(path)


def test_plot_strip_outside_signal_raises(tmp_path: Path) -> None:
    signal, beats = _synthetic_ecg(5.0)
    with pytest.raises(ValueError, match="outside"):
        plot_strip(
            signal,
            FS,
            tmp_path / "none.png",
            title="none",
            start_s=10.0,
            duration_s=5.0,
            ref_samples=beats,
            ref_labels=["N"] * beats.size,
            det_samples=beats,
            det_labels=["N"] * beats.size,
        )
    assert not (tmp_path / "none.png").exists()
