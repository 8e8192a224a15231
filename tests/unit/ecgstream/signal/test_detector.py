"""The streaming QRS detector: chunk invariance, and accuracy on real MIT-BIH records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgstream.ec57 import match_beats
from ecgstream.records import choose_lead, load_record, load_reference_beats
from ecgstream.signal.detector import QrsDetector


def _detect(x: np.ndarray, chunks: list[int] | int) -> list[int]:
    detector = QrsDetector(360.0)
    beats: list[int] = []
    begin = 0
    sizes = iter(chunks) if isinstance(chunks, list) else None
    while begin < x.size:
        step = next(sizes, 360) if sizes is not None else chunks
        beats += detector.push(x[begin : begin + step])
        begin += step
    return beats + detector.flush()


@pytest.fixture(scope="module")
def record_208(mitdb_dir: Path) -> np.ndarray:
    # 208: frequent PVCs, couplets and fusion beats: the hardest DS1 record for the decisions
    record = load_record(mitdb_dir, "208")
    return record.lead("MLII")[: 360 * 180]


@pytest.mark.parametrize("chunk", [1, 7, 97, 360, 1000, 65_000])
def test_any_chunk_size_gives_the_beats_of_the_whole_signal(
    record_208: np.ndarray, chunk: int
) -> None:
    whole = _detect(record_208, record_208.size)
    assert len(whole) > 150
    assert _detect(record_208, chunk) == whole


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=1, max_size=200))
def test_irregular_chunking_gives_the_same_beats(sizes: list[int]) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(360 * 30) / 360.0
    # a synthetic ECG-like train: narrow spikes at a varying rate, wander and noise
    beat_times = np.cumsum(0.6 + 0.3 * rng.random(60))
    x = 0.3 * np.sin(2 * np.pi * 0.3 * t) + 0.02 * rng.standard_normal(t.size)
    for bt in beat_times[beat_times < 29.5]:
        x += 1.5 * np.exp(-(((t - bt) / 0.012) ** 2))
    whole = _detect(x, x.size)
    assert _detect(x, sizes) == whole


@pytest.mark.parametrize("name", ["101", "208", "114"])
def test_detection_accuracy_on_real_records(mitdb_dir: Path, name: str) -> None:
    record = load_record(mitdb_dir, name)
    reference = load_reference_beats(mitdb_dir, name)
    x = record.lead(choose_lead(record.lead_names))  # 114: MLII is the second lead
    detected = np.array(_detect(x, 360))
    match = match_beats(reference.samples, detected, round(0.15 * record.fs))
    se = match.ref_index.size / reference.samples.size
    ppv = match.det_index.size / detected.size
    # measured (whole record, first 5 minutes included): 101 100/99.9 %, 208 99.5/99.9 %,
    # 114 99.9/100 %; a regression of a few beats in a thousand fails
    assert se > 0.99
    assert ppv > 0.995


def test_silence_gives_no_beats() -> None:
    assert _detect(np.zeros(360 * 20), 360) == []


def test_a_stream_shorter_than_the_learning_phase_still_flushes() -> None:
    t = np.arange(360) / 360.0
    x = np.exp(-(((t - 0.5) / 0.012) ** 2))
    detector = QrsDetector(360.0)
    assert detector.push(x) == []
    assert isinstance(detector.flush(), list)


@given(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=400),
    st.integers(1, 120),
)
@settings(max_examples=200, deadline=None)
def test_running_max_is_the_maximum_of_each_window(values: list[float], half: int) -> None:
    from ecgstream.signal.detector import running_max

    x = np.array(values)
    padded = np.concatenate((np.full(half, -1.0), x, np.full(half, -1.0)))
    expected = [padded[i : i + 2 * half + 1].max() for i in range(x.size)]
    assert np.array_equal(running_max(x, half, outside=-1.0), np.array(expected))
