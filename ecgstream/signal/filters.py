"""Causal filters that keep their state between chunks.

Feeding a signal through these in chunks of any size gives bit-for-bit the output of feeding it
whole: the IIR runs the same recurrence sample by sample with carried state, and each FIR output
is the same dot product over the same inputs.

Streams arrive as ~1-second chunks, so per-call overhead matters more than per-sample cost:
scipy's public `sosfilt` spends ~30 us per call in argument handling around a ~3 us kernel, so
we call the kernel (`scipy.signal._sosfilt`) directly when it is there.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

try:  # scipy's compiled kernel behind sosfilt (private, stable since scipy 1.x)
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - exercised only on a scipy without it
    _sosfilt_kernel = None


class StreamingSOS:
    """An IIR filter in second-order sections with carried state (starting from rest)."""

    def __init__(self, sos: np.ndarray) -> None:
        self._sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi = np.zeros((1, self._sos.shape[0], 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if _sosfilt_kernel is None:
            y, zi = signal.sosfilt(self._sos, x, zi=self._zi[0])
            self._zi[0] = zi
            return y
        y = np.array(x, dtype=np.float64, copy=True).reshape(1, -1)
        _sosfilt_kernel(self._sos, y, self._zi)  # in place, updates the state
        return y[0]


class StreamingFIR:
    """An FIR filter carrying its last len(taps) - 1 inputs."""

    def __init__(self, taps: np.ndarray) -> None:
        self._taps = np.asarray(taps, dtype=np.float64)
        self._tail = np.zeros(self._taps.size - 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        extended = np.concatenate((self._tail, x))
        if self._tail.size:
            self._tail = extended[-self._tail.size :]
        return np.convolve(extended, self._taps, mode="valid")


def qrs_bandpass(fs: float, band_hz: tuple[float, float] = (5.0, 15.0)) -> StreamingSOS:
    """The band where QRS energy dominates P/T waves, baseline wander and muscle noise."""
    return StreamingSOS(signal.butter(2, list(band_hz), btype="bandpass", fs=fs, output="sos"))


def derivative(fs: float) -> StreamingFIR:
    """Pan-Tompkins five-point derivative, scaled to units per second."""
    return StreamingFIR(np.array([2.0, 1.0, 0.0, -1.0, -2.0]) * fs / 8.0)


def moving_average(width: int) -> StreamingFIR:
    return StreamingFIR(np.full(width, 1.0 / width))
