"""ADC units to millivolts: numpy only, so the edge runner converts exactly as the server does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def adc_to_millivolts(
    digital: np.ndarray, gain: Sequence[float], baseline: Sequence[int]
) -> np.ndarray:
    """ADC units (n_leads, n) to float32 millivolts. The one conversion of the project: the
    stream and the offline paths (training, evaluation) must feed the detector identical
    numbers, or a beat on the edge of a threshold is found in one and not the other."""
    gain_mv = np.asarray(gain, dtype=np.float32)[:, None]
    base = np.asarray(baseline, dtype=np.float32)[:, None]
    return (np.asarray(digital).astype(np.float32) - base) / gain_mv
