"""Per-chunk signal statistics and the usual values, against their plain definitions."""

from __future__ import annotations

import statistics

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgstream.monitoring.signal_quality import TrailingMedian
from ecgstream.signal.chunk_stats import chunk_stats


@given(
    st.lists(st.floats(-5, 5, allow_nan=False), max_size=300),
    st.integers(1, 40),
    st.integers(0, 10),
)
@settings(max_examples=200, deadline=None)
def test_trailing_median_is_the_median_of_the_past_less_the_present(
    values: list[float], maxlen: int, skip: int
) -> None:
    trailing = TrailingMedian(maxlen, skip)
    for n, value in enumerate(values, start=1):
        trailing.append(value)
        window = values[max(0, n - maxlen) : n]
        past = window[: len(window) - skip] if len(window) > skip else []
        assert trailing.past == len(past)
        if past:
            assert trailing.median() == statistics.median(past)


@given(st.integers(3, 800), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_chunk_statistics_equal_numpy_definitions(n: int, dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=n) + (rng.random(n) < 0.05) * 3).astype(dtype)
    x[rng.integers(0, n, size=3)] = x.max()  # ties at the top rail
    w = chunk_stats("d", 0, 360.0, "MLII", x, 0)
    assert w.mean_mv == float(x.mean())
    assert w.std_mv == float(x.std())
    assert w.at_extremes == float(np.mean((x == x.min()) | (x == x.max())))
    assert w.noise_mv == 1.4826 * float(np.median(np.abs(np.diff(x, 2)))) / np.sqrt(6.0)
    assert (w.min_mv, w.max_mv) == (float(x.min()), float(x.max()))
