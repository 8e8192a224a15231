"""Streaming rational resampling (polyphase FIR, same filter as scipy's resample_poly).

Output sample k sits at input time k / fs_out; it is computed once every input sample its filter
touches has arrived, so chunking never changes the output.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ecgstream.signal.filters import designed


class StreamingResampler:
    def __init__(self, fs_in: float, fs_out: float, max_denominator: int = 1000) -> None:
        ratio = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.fs_in, self.fs_out = fs_in, fs_out
        self._x = np.zeros(0)
        self._x_start = 0  # global index of self._x[0]
        self._next = 0  # next output index
        if self.identity:
            return
        factor = max(self.up, self.down)
        self._half = 10 * factor
        length = 2 * self._half + 1
        self._taps = resampler_taps(self.up, self.down) * self.up
        self._span = math.ceil(length / self.up) + 1  # input samples per output, at most

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            return x
        self._x = np.concatenate((self._x, x))
        received = self._x_start + self._x.size
        return self._emit(received, limit=received)

    def flush(self) -> np.ndarray:
        """End of stream: emit outputs up to the input's duration, as if zeros followed."""
        if self.identity:
            return np.zeros(0)
        received = self._x_start + self._x.size
        last = (received * self.up - 1) // self.down  # last output within the input's span
        return self._emit(received + self._span, limit=received, last=last)

    def _emit(self, available: int, *, limit: int, last: int | None = None) -> np.ndarray:
        # output k needs inputs up to (k * down + half) // up
        k_max = (available * self.up - self._half - 1) // self.down
        if last is not None:
            k_max = min(k_max, last)
        if k_max < self._next:
            return np.zeros(0)
        k = np.arange(self._next, k_max + 1)
        m = k * self.down + self._half  # position in the upsampled, filtered stream
        first_input = -((-(m - self._taps.size + 1)) // self.up)  # ceil division
        inputs = first_input[:, None] + np.arange(self._span)[None, :]
        taps = m[:, None] - inputs * self.up
        valid = (taps >= 0) & (taps < self._taps.size) & (inputs >= 0) & (inputs < limit)
        local = np.clip(inputs - self._x_start, 0, max(self._x.size - 1, 0))
        values = np.where(valid, self._x[local] if self._x.size else 0.0, 0.0)
        weights = np.where(valid, self._taps[np.clip(taps, 0, self._taps.size - 1)], 0.0)
        out = np.ascontiguousarray(values * weights).sum(axis=1)
        self._next = k_max + 1
        # keep the inputs the next output still needs
        needed = -((-((self._next * self.down + self._half) - self._taps.size + 1)) // self.up)
        drop = needed - self._x_start
        if drop > 0:
            self._x = self._x[drop:]
            self._x_start += drop
        return out


def resampler_key(up: int, down: int) -> str:
    return f"firwin-kaiser5-up{up}-down{down}"


def resampler_taps(up: int, down: int) -> np.ndarray:
    """The anti-aliasing low-pass of an up/down resampler (precomputed ones first: see
    `filters.use_designs`)."""

    def compute() -> np.ndarray:
        from scipy import signal

        factor = max(up, down)
        return signal.firwin(2 * 10 * factor + 1, 1.0 / factor, window=("kaiser", 5.0))

    return designed(resampler_key(up, down), compute)
