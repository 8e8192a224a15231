"""Causal filters that keep their state between chunks.

Feeding a signal through these in chunks of any size gives bit-for-bit the output of feeding it
whole: the IIR runs the same recurrence sample by sample with carried state, and each FIR output
is the same dot product over the same inputs.

Streams arrive as ~1-second chunks, so per-call overhead matters more than per-sample cost:
scipy's public `sosfilt` spends ~30 us per call in argument handling around a ~3 us kernel, so
we call the kernel (`scipy.signal._sosfilt`) directly when it is there.

`scipy.signal` itself costs ~80 MB of memory to import (it pulls scipy.linalg, sparse, special),
which an edge device cannot spare: the kernel is loaded on its own, and the filter designs
(`butter`) can come precomputed (`use_designs`, from an edge bundle) instead of from scipy.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_DESIGNS: dict[str, np.ndarray] = {}  # precomputed coefficients by design key


def _load_sosfilt_kernel() -> Callable[..., Any] | None:
    """scipy's compiled kernel behind sosfilt (private, stable since scipy 1.x), loaded from its
    file so that the `scipy.signal` package (and all it imports) is not."""
    import scipy

    found = sorted((Path(scipy.__file__).parent / "signal").glob("_sosfilt.*"))
    for path in found:
        if path.suffix not in (".so", ".pyd"):
            continue
        loader = importlib.machinery.ExtensionFileLoader("scipy.signal._sosfilt", str(path))
        spec = importlib.util.spec_from_loader("scipy.signal._sosfilt", loader)
        if spec is None:
            continue
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return getattr(module, "_sosfilt", None)
    return None  # pragma: no cover - a scipy without it: the public sosfilt is used


_sosfilt_kernel = _load_sosfilt_kernel()


def use_designs(designs: dict[str, list[Any]]) -> None:
    """Filter coefficients computed elsewhere (an edge bundle's), by `design_key`."""
    _DESIGNS.update({key: np.asarray(value, dtype=np.float64) for key, value in designs.items()})


def bandpass_key(fs: float, band_hz: tuple[float, float]) -> str:
    return f"butter2-bandpass-{band_hz[0]:g}-{band_hz[1]:g}-fs{fs:g}"


def designed(key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The coefficients of `key`: precomputed if given, else computed once (with scipy)."""
    if key not in _DESIGNS:
        _DESIGNS[key] = np.asarray(compute(), dtype=np.float64)
    return _DESIGNS[key]


def bandpass_sos(fs: float, band_hz: tuple[float, float]) -> np.ndarray:
    def compute() -> np.ndarray:
        from scipy import signal

        return signal.butter(2, list(band_hz), btype="bandpass", fs=fs, output="sos")

    return designed(bandpass_key(fs, band_hz), compute)


class StreamingSOS:
    """An IIR filter in second-order sections with carried state (starting from rest)."""

    def __init__(self, sos: np.ndarray) -> None:
        self._sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi = np.zeros((1, self._sos.shape[0], 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if _sosfilt_kernel is None:
            from scipy import signal

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
    return StreamingSOS(bandpass_sos(fs, band_hz))


def derivative(fs: float) -> StreamingFIR:
    """Pan-Tompkins five-point derivative, scaled to units per second."""
    return StreamingFIR(np.array([2.0, 1.0, 0.0, -1.0, -2.0]) * fs / 8.0)


def moving_average(width: int) -> StreamingFIR:
    return StreamingFIR(np.full(width, 1.0 / width))
