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


def vf_evidence(x_mv: np.ndarray, fs: float, config: VfConfig | None = None) -> VfEvidence:
    """The measures of one window of the detection lead (any length; `window_s` is the usual)."""
    c = config or VfConfig()
    x = np.asarray(x_mv, dtype=np.float64)
    n = x.size
    if n < 8:
        return VfEvidence(0.0, 0.0, 0.0, 0.0)
    t = np.arange(n)
    x = x - np.polyval(np.polyfit(t, x, 1), t)  # wander out, without a filter's start-up
    amplitude = float(np.percentile(x, 99) - np.percentile(x, 1))
    taper = np.ones(n)
    m = min(n // 2, round(c.taper_s * fs))
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
        taper[:m], taper[n - m :] = ramp, ramp[::-1]
    tapered = x * taper
    peak = float(np.abs(tapered).max())
    tcsc = float(np.mean(np.abs(tapered) > c.tcsc_level * peak)) if peak > 0 else 0.0
    power = np.abs(np.fft.rfft(x * np.hanning(n))) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    total = power[(freqs >= c.total_hz[0]) & (freqs <= c.total_hz[1])].sum()
    band_mask = (freqs >= c.band_hz[0]) & (freqs <= c.band_hz[1])
    band = power[band_mask].sum()
    dominant = float(freqs[band_mask][np.argmax(power[band_mask])]) if band_mask.any() else 0.0
    return VfEvidence(
        tcsc=round(tcsc, 4),
        concentration=round(float(band / total), 4) if total > 0 else 0.0,
        dominant_hz=round(dominant, 3),
        amplitude_mv=round(amplitude, 4),
    )
