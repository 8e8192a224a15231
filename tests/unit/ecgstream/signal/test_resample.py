from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from ecgstream.signal.resample import StreamingResampler


@pytest.mark.parametrize("fs_in", [128.0, 250.0, 500.0, 1000.0])
@pytest.mark.parametrize("chunk", [1, 33, 250, 10_000])
def test_streaming_equals_resample_poly_and_ignores_chunking(fs_in: float, chunk: int) -> None:
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(5000) / fs_in * 2 * np.pi * 3) + 0.1 * rng.standard_normal(5000)
    whole = StreamingResampler(fs_in, 360.0)
    expected = np.concatenate([whole.push(x), whole.flush()])
    resampler = StreamingResampler(fs_in, 360.0)
    parts = [resampler.push(x[i : i + chunk]) for i in range(0, x.size, chunk)]
    got = np.concatenate([*parts, resampler.flush()])
    assert np.array_equal(got, expected)
    reference = signal.resample_poly(x, resampler.up, resampler.down)
    assert got.size == reference.size
    np.testing.assert_allclose(got, reference, atol=1e-12)


def test_same_rate_is_a_pass_through() -> None:
    resampler = StreamingResampler(360.0, 360.0)
    x = np.arange(10.0)
    assert resampler.identity
    assert np.array_equal(resampler.push(x), x)
    assert resampler.flush().size == 0
