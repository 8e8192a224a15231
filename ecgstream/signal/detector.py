"""A streaming QRS detector (Pan-Tompkins family) that gives the same beats for any chunking.

Pipeline per sample: 5-15 Hz band-pass -> derivative -> square -> 150 ms moving integration.
Candidate peaks are local maxima of the integrated signal over +-200 ms; each is decided with
Pan-Tompkins' adaptive signal/noise levels, T-wave rejection by slope, and search-back for
missed beats at a lower threshold. A beat's R peak is then placed on the largest deflection of
the raw signal near the candidate.

Chunk invariance comes from two rules: every filter carries its state (see `filters`), and a
position is decided only once everything its decision looks at (a fixed look-ahead) has arrived,
so *what* is decided never depends on *when* data arrived, only how soon it is reported.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ecgstream.signal.filters import derivative, moving_average, qrs_bandpass


@dataclass(frozen=True)
class DetectorConfig:
    integration_s: float = 0.150  # moving integration window
    neighbourhood_s: float = 0.200  # a candidate is the largest value within +-this
    refractory_s: float = 0.200  # no two beats closer than this
    t_wave_s: float = 0.360  # a candidate closer than this to the last beat may be a T wave
    learning_s: float = 2.0  # initial thresholds from the first seconds
    searchback_factor: float = 1.66  # look back when RR exceeds this x the average RR
    history_s: float = 4.0  # signal kept for search-back and R-peak placement
    r_search_s: float = 0.060  # half-width of the raw-signal window for the R peak
    forget_after_s: float = 3.0  # without beats this long, lower the signal level estimate
    band_hz: tuple[float, float] = (5.0, 15.0)  # QRS band-pass
    threshold_fraction: float = 0.08  # of the way from noise level to signal level
    searchback_fraction: float = 0.5  # of the normal threshold, when searching back


@dataclass
class _Candidate:
    position: int  # global index of the integrated-signal peak
    height: float
    slope: float  # largest |derivative| in the QRS before it


class QrsDetector:
    """Feed millivolt chunks with `push`; get R-peak sample indices (global, increasing)."""

    def __init__(
        self, fs: float, config: DetectorConfig | None = None, tick_samples: int | None = None
    ) -> None:
        self.fs = fs
        self.config = config or DetectorConfig()
        c = self.config
        self._bandpass = qrs_bandpass(fs, c.band_hz)
        self._derivative = derivative(fs)
        self._integrate = moving_average(max(1, round(c.integration_s * fs)))
        self._half = max(1, round(c.neighbourhood_s * fs))
        self._keep = round(c.history_s * fs)
        self._r_search = max(1, round(c.r_search_s * fs))
        # delay from the QRS to the peak of the integrated signal: filter group delays
        self._qrs_delay = round(0.042 * fs) + round(c.integration_s * fs) // 2

        # signal history: global index of self._x[0] is self._start
        self._start = 0
        self._x = np.zeros(0)
        self._slope = np.zeros(0)
        self._mwi = np.zeros(0)
        self._decided = 0  # candidates are decided for positions < this

        self._learning = True
        self._learning_end = round(c.learning_s * fs)
        self._learning_max = 0.0
        self._learning_sum = 0.0
        self._learning_count = 0
        self._spk = 0.0
        self._npk = 0.0
        self._last_beat: _Candidate | None = None
        self._rr: deque[int] = deque(maxlen=8)
        self._since_last: list[_Candidate] = []  # noise candidates since the last beat

        # clock ticks: every `tick_samples`, the last R peak known from what lies before it
        self._tick_samples = tick_samples
        self._next_tick = tick_samples or 0
        self._last_peak: int | None = None
        self._ticks: list[tuple[int, int | None]] = []

    # -- public ------------------------------------------------------------------------------

    @property
    def samples_seen(self) -> int:
        return self._start + self._x.size

    def push(self, x: np.ndarray) -> list[int]:
        """Add samples (mV); return R peaks that became final, as global sample indices."""
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return []
        slope = self._derivative(self._bandpass(x))
        mwi = self._integrate(slope * slope)
        self._x = np.concatenate((self._x, x))
        self._slope = np.concatenate((self._slope, np.abs(slope)))
        self._mwi = np.concatenate((self._mwi, mwi))
        if self._learning:
            self._learn(mwi)
        end = self.samples_seen - self._half - self._r_search  # look-ahead is complete below
        beats = self._decide_until(end)
        self._trim()
        return beats

    def flush(self) -> list[int]:
        """End of stream: decide the remaining positions as if the signal stopped here."""
        return self._decide_until(self.samples_seen)

    def pop_ticks(self) -> list[tuple[int, int | None]]:
        """(position, last R peak before it) for each tick decided since the last call.

        A tick at position g carries only what candidates before g decided, and is made once
        everything before g is decided: the same ticks for any chunking, and a silence is seen
        at the tick itself, not when the next beat finally comes."""
        ticks, self._ticks = self._ticks, []
        return ticks

    # -- decisions ---------------------------------------------------------------------------

    def _learn(self, mwi: np.ndarray) -> None:
        """Initial signal and noise levels from the first seconds (Pan-Tompkins' learning phase)."""
        room = self._learning_end - self._learning_count
        if room > 0:
            part = mwi[:room]
            self._learning_max = max(self._learning_max, float(part.max()))
            self._learning_sum += float(part.sum())
            self._learning_count += part.size
        if self._learning_count >= self._learning_end:
            self._learning = False
            self._spk = 0.25 * self._learning_max
            self._npk = 0.5 * self._learning_sum / self._learning_count

    def _decide_until(self, end: int) -> list[int]:
        if self._learning and end < self.samples_seen:
            return []  # nothing is decided before the initial levels are known
        if self._learning:  # flush of a stream shorter than the learning phase
            self._learning_end = max(1, self._learning_count)
            self._learn(np.zeros(0))
        if end <= self._decided:
            return []
        candidates = self._candidates(self._decided, end)
        self._decided = end
        beats: list[int] = []
        for candidate in candidates:
            self._tick_until(candidate.position)
            found = self._classify(candidate)
            if found:
                self._last_peak = (
                    max(found) if self._last_peak is None else max(self._last_peak, *found)
                )
            beats.extend(found)
        self._tick_until(end)
        return beats

    def _tick_until(self, position: int) -> None:
        if self._tick_samples is None:
            return
        while self._next_tick <= position:
            self._ticks.append((self._next_tick, self._last_peak))
            self._next_tick += self._tick_samples

    def _candidates(self, begin: int, end: int) -> list[_Candidate]:
        """Local maxima of the integrated signal over +-neighbourhood, for begin <= i < end."""
        lo = max(begin - self._half, self._start)
        hi = min(end + self._half, self.samples_seen)
        window = self._mwi[lo - self._start : hi - self._start]
        if window.size == 0:
            return []
        local_max = running_max(window, self._half, outside=-1.0)
        shifted = np.empty_like(window)
        shifted[0] = -1.0
        shifted[1:] = window[:-1]
        is_peak = (window == local_max) & (window > shifted) & (window > 0)
        offset = begin - lo
        positions = np.flatnonzero(is_peak[offset : offset + (end - begin)]) + begin
        found = []
        width = round(self.config.integration_s * self.fs)
        for position in positions:
            i = int(position) - self._start
            slope = float(self._slope[max(0, i - width) : i + 1].max())
            found.append(_Candidate(int(position), float(self._mwi[i]), slope))
        return found

    def _classify(self, candidate: _Candidate) -> list[int]:
        beats: list[int] = []
        fs = self.fs
        c = self.config
        last = self._last_beat
        if last is not None and self._rr:
            gap = candidate.position - last.position
            average = sum(self._rr) / len(self._rr)
            if gap > c.searchback_factor * average:
                beats.extend(self._search_back(candidate.position))
            elif gap > c.forget_after_s * fs:
                self._spk *= 0.5
        last = self._last_beat
        threshold = self._npk + c.threshold_fraction * (self._spk - self._npk)
        if last is not None and candidate.position - last.position < c.refractory_s * fs:
            return beats
        if candidate.height > threshold:
            if (
                last is not None
                and candidate.position - last.position < c.t_wave_s * fs
                and candidate.slope < 0.5 * last.slope
            ):
                self._noise(candidate)
                return beats
            self._spk = 0.125 * candidate.height + 0.875 * self._spk
            beats.append(self._accept(candidate))
        else:
            self._noise(candidate)
        return beats

    def _search_back(self, before: int) -> list[int]:
        last = self._last_beat
        assert last is not None
        c = self.config
        threshold = c.searchback_fraction * (
            self._npk + c.threshold_fraction * (self._spk - self._npk)
        )
        earliest = last.position + c.refractory_s * self.fs
        pool = [
            c
            for c in self._since_last
            if c.position >= earliest and c.position < before and c.height > threshold
        ]
        if not pool:
            self._spk *= 0.75  # nothing qualified: the signal level estimate was too high
            return []
        best = max(pool, key=lambda c: c.height)
        self._spk = 0.25 * best.height + 0.75 * self._spk
        beat = self._accept(best)
        later = [c for c in self._since_last if c.position > best.position]
        self._since_last = later
        return [beat]

    def _accept(self, candidate: _Candidate) -> int:
        if self._last_beat is not None:
            self._rr.append(candidate.position - self._last_beat.position)
        self._last_beat = candidate
        self._since_last = []
        return self._r_peak(candidate.position)

    def _noise(self, candidate: _Candidate) -> None:
        self._npk = 0.125 * candidate.height + 0.875 * self._npk
        self._since_last.append(candidate)

    def _r_peak(self, mwi_peak: int) -> int:
        """The largest deflection of the raw signal around where the QRS must be."""
        centre = mwi_peak - self._qrs_delay
        lo = max(self._start, centre - 2 * self._r_search)
        hi = min(self.samples_seen, centre + self._r_search + 1)
        if hi <= lo:
            return max(0, centre)
        segment = self._x[lo - self._start : hi - self._start]
        middle = segment.size // 2
        deflection = np.abs(segment - np.partition(segment, middle)[middle])
        return lo + int(np.argmax(deflection))

    def _trim(self) -> None:
        drop = self._x.size - self._keep
        if drop > 0:
            self._x = self._x[drop:]
            self._slope = self._slope[drop:]
            self._mwi = self._mwi[drop:]
            self._start += drop


def running_max(x: np.ndarray, half: int, outside: float) -> np.ndarray:
    """max(x[i-half : i+half+1]) for every i, `outside` beyond the ends (scipy.ndimage's
    maximum_filter1d in "constant" mode, without importing scipy.ndimage: its ~30 MB matter on
    the edge device). By doubling: after k steps m[i] is the max of 2**k samples from i, and two
    overlapping such spans cover a window; ~9 array maxima instead of a sliding-window view
    (7x cheaper on the few hundred samples a chunk brings, and exactly the same values)."""
    width = 2 * half + 1
    m = np.full(x.size + 2 * half, outside, dtype=x.dtype)
    m[half : half + x.size] = x
    span = 1
    while 2 * span <= width:
        m = np.maximum(m[:-span], m[span:])
        span *= 2
    rest = width - span
    return np.maximum(m[: x.size], m[rest : rest + x.size])
