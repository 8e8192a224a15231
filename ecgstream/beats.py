"""Beat windows and RR features, cut in streaming form from detected R peaks.

What tells beat classes apart across patients (see shared/notes/field-anchors.md) is relative
to the patient: S beats are premature against *this* patient's rhythm, V beats look unlike
*this* patient's usual beat. So each beat carries:

- a window of the signal around the R peak, scaled by the patient's typical beat amplitude,
  and the window minus the patient's typical beat (the median of the last beats' windows);
- RR intervals (previous, next: one beat of look-ahead) with local and long-run averages and
  their ratios.

A beat is released once the next beat is known and its whole window has arrived, so the output
depends only on the signal, never on how it was chunked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

RR_FEATURES: tuple[str, ...] = (
    "pre_rr_s",
    "post_rr_s",
    "local_rr_s",
    "long_rr_s",
    "pre_over_local",
    "post_over_local",
    "pre_over_long",
    "pre_over_post",
)


@dataclass(frozen=True)
class BeatConfig:
    fs: float = 360.0
    before: int = 90  # samples before the R peak
    after: int = 166  # samples from the R peak on (window = before + after = 256)
    template_beats: int = 8  # the typical beat is the median of this many recent windows
    local_beats: int = 10  # local RR average over this many intervals
    long_rr_alpha: float = 0.01  # long-run RR average: exponential, ~100 beats
    min_scale_mv: float = 0.1  # floor of the amplitude scale (flat or lead-off signals)
    max_detection_delay_s: float = 4.0  # how far in the past the detector may still report
    n_leads: int = 1  # leads cut per beat: 1 = the detection lead; 2 adds a second lead

    @property
    def channels(self) -> int:
        return 2 * self.n_leads

    @property
    def window(self) -> int:
        return self.before + self.after


@dataclass(frozen=True, slots=True, eq=False)
class BeatWindow:
    """One beat ready for the classifier."""

    sample: int  # R peak, index in the (model-rate) stream
    # float32 (2 * n_leads, window): per lead, the scaled beat and the scaled beat minus the
    # patient's typical beat
    window: np.ndarray
    rr: np.ndarray  # float32 (len(RR_FEATURES),)

    @property
    def pre_rr_s(self) -> float:
        return float(self.rr[0])


class BeatExtractor:
    """Per-patient state: signal history, recent windows, RR history."""

    def __init__(self, config: BeatConfig | None = None) -> None:
        self.config = config or BeatConfig()
        c = self.config
        self._history = np.zeros((c.n_leads, 0), dtype=np.float64)
        self._history_start = 0
        self._pending: deque[int] = deque()  # detected R peaks not yet released
        self._previous_r: int | None = None
        self._windows = np.zeros((c.template_beats, c.n_leads, c.window))  # recent windows
        self._n_windows = 0
        self._rr: deque[float] = deque(maxlen=c.local_beats)
        self._long_rr: float | None = None

    @property
    def samples_seen(self) -> int:
        return self._history_start + self._history.shape[1]

    def push(self, x_mv: np.ndarray, r_peaks: list[int]) -> list[BeatWindow]:
        """Add this chunk's samples, (n_leads, n) or one lead (n,) used for every lead, and the
        R peaks found so far; release the beats that are ready."""
        x = np.asarray(x_mv, dtype=np.float64)
        if x.ndim == 1:
            x = np.broadcast_to(x, (self.config.n_leads, x.size))
        self._history = np.concatenate((self._history, x), axis=1)
        self._pending.extend(r_peaks)
        released = []
        while len(self._pending) >= 2 and self._pending[0] + self.config.after <= self.samples_seen:
            current = self._pending.popleft()
            released.append(self._release(current, self._pending[0]))
        self._trim()
        return released

    def flush(self, r_peaks: list[int]) -> list[BeatWindow]:
        """End of stream: release every beat; the last one has no next beat (post RR = local)."""
        self._pending.extend(r_peaks)
        released = []
        while self._pending:
            current = self._pending.popleft()
            following = self._pending[0] if self._pending else None
            if current + self.config.after > self.samples_seen:
                break  # its window never arrived
            released.append(self._release(current, following))
        return released

    def _release(self, r: int, next_r: int | None) -> BeatWindow:
        c = self.config
        fs = c.fs
        window = self._cut(r)
        self._windows[self._n_windows % c.template_beats] = window
        self._n_windows += 1
        typical = _median_rows(self._windows[: min(self._n_windows, c.template_beats)])
        scale = np.maximum(typical.max(axis=1) - typical.min(axis=1), c.min_scale_mv)[:, None]

        pre = (r - self._previous_r) / fs if self._previous_r is not None else None
        if pre is not None:
            self._rr.append(pre)
            self._long_rr = (
                pre
                if self._long_rr is None
                else (c.long_rr_alpha * pre + (1 - c.long_rr_alpha) * self._long_rr)
            )
        local = sum(self._rr) / len(self._rr) if self._rr else None
        post = (next_r - r) / fs if next_r is not None else None
        # the first beat has no previous, the last no next: stand in the patient's averages
        fallback = local or post or pre or 1.0
        pre_v = pre if pre is not None else (post or fallback)
        post_v = post if post is not None else fallback
        local_v = local if local is not None else pre_v
        long_v = self._long_rr if self._long_rr is not None else local_v
        rr = np.array(
            [
                pre_v,
                post_v,
                local_v,
                long_v,
                pre_v / local_v,
                post_v / local_v,
                pre_v / long_v,
                pre_v / post_v,
            ],
            dtype=np.float32,
        )
        self._previous_r = r
        stacked = np.empty((c.channels, c.window), dtype=np.float32)
        stacked[0::2] = window / scale
        stacked[1::2] = (window - typical) / scale
        return BeatWindow(sample=r, window=stacked, rr=rr)

    def _cut(self, r: int) -> np.ndarray:
        c = self.config
        lo = r - c.before - self._history_start
        hi = r + c.after - self._history_start
        segment = self._history[:, max(0, lo) : max(0, hi)]
        if lo < 0:  # a beat at the very start of the stream: pad with its first values
            pad = segment[:, :1] if segment.shape[1] else np.zeros((c.n_leads, 1))
            segment = np.concatenate((np.repeat(pad, -lo, axis=1), segment), axis=1)
        if segment.shape[0] == 1:
            return segment - _median(segment[0])
        return segment - np.array([[_median(row)] for row in segment])

    def _trim(self) -> None:
        # keep what the oldest pending beat's window needs
        c = self.config
        horizon = self.samples_seen - round(c.max_detection_delay_s * c.fs)
        oldest = self._pending[0] if self._pending else horizon
        keep_from = min(oldest, horizon) - c.before
        drop = keep_from - self._history_start
        if drop > 0:
            self._history = self._history[:, drop:]
            self._history_start += drop


def _median(values: np.ndarray) -> float:
    """np.median without its per-call overhead (this runs once per beat)."""
    n = values.size
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return 0.5 * float(part[half - 1] + part[half])


def _median_rows(rows: np.ndarray) -> np.ndarray:
    """Column-wise median of a few rows."""
    n = rows.shape[0]
    half = n // 2
    if n % 2:
        return np.partition(rows, half, axis=0)[half]
    part = np.partition(rows, (half - 1, half), axis=0)
    return 0.5 * (part[half - 1] + part[half])
