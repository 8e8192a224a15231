"""Ventricular fibrillation and flutter from the signal itself.

A beat detector has nothing to find in VF: the ECG becomes a fast, roughly sinusoidal wave with
no isoelectric line. Two classic, cheap measures of a few seconds of signal tell that apart from
a rhythm of QRS complexes (Amann et al., "Detecting ventricular fibrillation by time-delay
methods" and the comparison of 13 VF algorithms, IEEE TBME 2005/2007, which both use):

- TCSC (Arafat et al. 2011): the share of samples above 20 % of the window's largest deflection.
  Narrow QRS complexes on a flat line give a small share; a continuous wave gives a large one.
- spectral concentration: VF/VFL puts its power in one band around 3-8 Hz; QRS complexes spread
  theirs over harmonics up to 30 Hz and more, muscle noise lies above 10 Hz, wander below 1 Hz.

Each measure alone is fooled by noise (electrode motion, the worst, sits in the same band), so
the alarm needs both, held for several seconds, and no technical fault at the time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VfConfig:
    window_s: float = 4.0
    taper_s: float = 0.25  # cosine taper at the window's ends (TCSC's own)
    tcsc_level: float = 0.2  # of the largest deflection
    band_hz: tuple[float, float] = (2.5, 9.0)  # where VF/VFL puts its power
    total_hz: tuple[float, float] = (0.7, 40.0)


@dataclass(frozen=True)
class VfEvidence:
    tcsc: float  # share of samples above tcsc_level (0..1)
    concentration: float  # power in band_hz over power in total_hz (0..1)
    dominant_hz: float
    amplitude_mv: float  # 99th minus 1st percentile of the window


@dataclass(frozen=True, eq=False)
class _Constants:
    """What depends only on the window's length: computed once (each second calls this)."""

    t: np.ndarray  # centred sample index, for the linear detrend
    t_norm: float
    taper: np.ndarray
    hann: np.ndarray
    total: slice  # rfft bins in total_hz
    band: slice  # rfft bins in band_hz
    band_freqs: np.ndarray


@functools.lru_cache(maxsize=8)
def _constants(n: int, fs: float, config: VfConfig) -> _Constants:
    t = np.arange(n) - (n - 1) / 2.0
    taper = np.ones(n)
    m = min(n // 2, round(config.taper_s * fs))
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        taper[:m], taper[n - m :] = ramp, ramp[::-1]
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    band = _bins(freqs, config.band_hz)
    return _Constants(
        t=t,
        t_norm=float(t @ t),
        taper=taper,
        hann=np.hanning(n),
        total=_bins(freqs, config.total_hz),
        band=band,
        band_freqs=freqs[band],
    )


def _bins(freqs: np.ndarray, band: tuple[float, float]) -> slice:
    """The (contiguous) bins with band[0] <= f <= band[1], as a slice: cheaper than a mask."""
    inside = np.flatnonzero((freqs >= band[0]) & (freqs <= band[1]))
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)


def vf_evidence(x_mv: np.ndarray, fs: float, config: VfConfig | None = None) -> VfEvidence:
    """The measures of one window of the detection lead (any length; `window_s` is the usual)."""
    c = config or VfConfig()
    x = np.asarray(x_mv, dtype=np.float64)
    n = x.size
    if n < 8:
        return VfEvidence(0.0, 0.0, 0.0, 0.0)
    k = _constants(n, fs, c)
    # least-squares line out (wander), without a filter's start-up
    x = x - x.sum() / n - (k.t @ x) / k.t_norm * k.t
    low, high = round(0.01 * (n - 1)), round(0.99 * (n - 1))
    ordered = np.partition(x, (low, high))
    amplitude = float(ordered[high] - ordered[low])
    tapered = np.abs(x * k.taper)
    peak = float(tapered.max())
    tcsc = float(np.count_nonzero(tapered > c.tcsc_level * peak)) / n if peak > 0 else 0.0
    spectrum = np.fft.rfft(x * k.hann)
    power = spectrum.real**2 + spectrum.imag**2
    total = float(power[k.total].sum())
    in_band = power[k.band]
    dominant = float(k.band_freqs[np.argmax(in_band)]) if in_band.size else 0.0
    return VfEvidence(
        tcsc=round(tcsc, 4),
        concentration=round(float(in_band.sum()) / total, 4) if total > 0 else 0.0,
        dominant_hz=round(dominant, 3),
        amplitude_mv=round(amplitude, 4),
    )
