"""Signal statistics of one chunk of a device's analysed lead: what sensor-fault rules judge.

Computed from arrays only (no wire format), so the stream (per received chunk), `evaluate` and
the REST API (per 1-second block of a record or segment) compute the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowStats:
    """One chunk's statistics, and the device's signal-quality verdict after it."""

    device_id: str
    first_sample: int
    n_samples: int
    fs: float
    lead: str
    mean_mv: float
    std_mv: float
    min_mv: float
    max_mv: float
    at_extremes: float  # fraction of samples at the chunk's min or max (clipping hint)
    published_ms: int
    start_time: float = 0.0  # the device's clock at the first sample (unix seconds)
    median_mv: float = 0.0  # the baseline level (robust to the QRS)
    amplitude_mv: float = 0.0  # 99th minus 1st percentile: about the QRS amplitude
    noise_mv: float = 0.0  # high-frequency noise, robust: MAD of second differences
    polarity: float = 0.0  # (up - down) / range around the median: > 0 for upright QRS
    patient_id: str = ""  # pseudonymous reference, for the technical alarms' rows
    faults: tuple[str, ...] = ()  # the device's active sensor faults after this chunk
    raised: tuple[str, ...] = ()  # faults this chunk raised (technical alarms)


def chunk_stats(
    device_id: str,
    first_sample: int,
    fs: float,
    lead: str,
    x_mv: np.ndarray,
    published_ms: int,
    start_time: float = 0.0,
    patient_id: str = "",
) -> WindowStats:
    """Statistics of `x_mv` (one lead, one chunk). At-extremes is judged on the values as given:
    millivolts are an exact affine map of the ADC counts, so ties at the rails are the same."""
    ordered = np.sort(x_mv)
    n = ordered.size
    low, median, high = ordered[n // 100], ordered[n // 2], ordered[min(n - 1, n * 99 // 100)]
    lowest, highest = ordered[0], ordered[-1]
    at_extremes = int(np.count_nonzero((x_mv == lowest) | (x_mv == highest))) / n
    # white noise of sd s gives second differences of sd s*sqrt(6); the median ignores QRS
    noise = 1.4826 * _median(np.abs(_second_difference(x_mv))) / math.sqrt(6.0)
    span = float(highest - lowest)
    polarity = float((highest - median) - (median - lowest)) / span if span > 0 else 0.0
    # mean and sd as ndarray.mean/.std compute them, without their per-call overhead
    mean = x_mv.sum() / n
    deviation = x_mv - mean
    std = float(np.sqrt((deviation * deviation).sum() / n))  # in the samples' dtype
    return WindowStats(
        device_id=device_id,
        first_sample=first_sample,
        n_samples=n,
        fs=fs,
        lead=lead,
        mean_mv=float(mean),
        std_mv=std,
        min_mv=float(lowest),
        max_mv=float(highest),
        at_extremes=at_extremes,
        published_ms=published_ms,
        start_time=start_time,
        median_mv=float(median),
        amplitude_mv=float(high - low),
        noise_mv=noise,
        polarity=polarity,
        patient_id=patient_id,
    )


def _second_difference(x: np.ndarray) -> np.ndarray:
    """np.diff(x, 2) (one zero below three samples)."""
    if x.size <= 2:
        return np.zeros(1, np.float32)
    first = x[1:] - x[:-1]
    return first[1:] - first[:-1]


def _median(values: np.ndarray) -> float:
    """np.median of a finite array, by partition (np.median's checks cost more than the work)."""
    n = values.size
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return float(part[half - 1] + part[half]) / 2
