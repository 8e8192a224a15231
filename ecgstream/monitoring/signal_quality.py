"""Sensor and connection faults of one device, from its per-chunk signal statistics.

Each fault is an *episode*, like a clinical alarm: raised once when its condition has held for
`persist` consecutive chunks, not again until it has been clear for `clear` chunks. Absolute
limits catch what no ECG looks like (a flat line, a rail, a DC offset); changes are judged
against the device's own recent past (a gain step, a flipped lead), because amplitudes and
polarities differ between patients and leads far more than a fault changes them.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ecgstream.alarms import Alarm, RhythmMonitor
from ecgstream.signal.chunk_stats import WindowStats, chunk_stats

TECHNICAL_KIND = "technical"


@dataclass(frozen=True)
class QualityConfig:
    flat_range_mv: float = 0.05  # a chunk spanning less than this is a flat line
    clipping_fraction: float = 0.05  # share of samples at the chunk's min or max (a rail)
    lead_off_offset_mv: float = 4.0  # |baseline| beyond this, with no ECG on it (below):
    lead_off_amplitude_mv: float = 0.2  # an amplifier pinned at a rail, electrode off. A DC
    # offset under a visible ECG is analysable (the noise stress records carry one of -6 mV)
    noise_mv: float = 0.06  # high-frequency noise floor of a usable ECG
    noise_vs_own: float = 3.0  # ... or this many times the device's own usual noise
    wander_mv: float = 0.5  # sd of the baseline over `wander_chunks` chunks
    wander_vs_own: float = 3.0  # ... and this many times the device's usual sd
    wander_chunks: int = 8
    gain_ratio: float = 1.8  # amplitude changed by this factor (or 1/factor) vs the history
    history_chunks: int = 120  # the device's own past used for changes (~2 minutes)
    recent_chunks: int = 8  # the present compared with it
    min_history_chunks: int = 30
    polarity_min: float = 0.3  # |polarity| needed on both sides for a flip to count
    fs_tolerance: float = 0.03  # device clock vs declared sampling rate
    gap_samples_s: float = 1.0  # missing signal longer than this is a gap
    late_s: float = 10.0  # a chunk published this long after its last sample is late
    persist: int = 4  # consecutive chunks before a fault is raised
    persist_inhibiting: int = 2  # ... for the faults that inhibit arrhythmia alarms (a rail
    # or noise makes false beats at once, and asystole is due at 4 s of a lead-off's silence)
    persist_change: int = 20  # ... for changes against the past (beat mix moves them too)
    clear: int = 10  # consecutive clean chunks before it can be raised again


FAULTS = (
    "flat_line",
    "clipping",
    "lead_off",
    "noise",
    "baseline_wander",
    "gain_change",
    "lead_changed",
    "fs_mismatch",
    "signal_gap",
    "late_data",
)


CHANGE_FAULTS = ("gain_change", "lead_changed", "baseline_wander")
# the faults during which the ECG cannot be analysed: arrhythmia alarms are inhibited and beats
# marked. A flat line is not one of them: with the leads on, a flat line is what asystole is.
INHIBITING_FAULTS = ("lead_off", "clipping", "noise")


def inhibiting_fault(faults: tuple[str, ...] | set[str]) -> str | None:
    """The fault that makes the signal unanalysable, if any (one name, stable order)."""
    return next((f for f in INHIBITING_FAULTS if f in faults), None)


class _Episode:
    def __init__(self) -> None:
        self.active = False
        self.run = 0  # consecutive chunks with the condition
        self.calm = 0  # consecutive chunks without it
        self.first: WindowStats | None = None


class DeviceQuality:
    """Per-device fault state; feed the device's chunk statistics in order with `add`."""

    def __init__(
        self, device_id: str, config: QualityConfig | None = None, session: str = ""
    ) -> None:
        self.device_id = device_id
        self._id_prefix = f"{device_id}:{session}" if session else device_id  # see RhythmMonitor
        self.config = config or QualityConfig()
        c = self.config
        self._episodes = {name: _Episode() for name in FAULTS}
        self._history: deque[WindowStats] = deque(maxlen=c.history_chunks + c.recent_chunks)
        # the usual values: medians of the history less its newest `recent_chunks`, kept sorted
        self._usual_of = {
            field: TrailingMedian(c.history_chunks + c.recent_chunks, c.recent_chunks)
            for field in USUAL_FIELDS
        }
        self._wander_sd = TrailingMedian(c.history_chunks, c.recent_chunks)  # baseline sd
        self._previous: WindowStats | None = None
        self.active: set[str] = set()

    def judge(self, w: WindowStats) -> tuple[WindowStats, list[Alarm]]:
        """`add`, returning the chunk's statistics with the verdict after it."""
        raised = self.add(w)
        faults = tuple(f for f in FAULTS if f in self.active)
        return replace(w, faults=faults, raised=tuple(a.evidence["fault"] for a in raised)), raised

    def add(self, w: WindowStats) -> list[Alarm]:
        c = self.config
        checks: dict[str, Callable[[], dict[str, Any] | None]] = {
            "flat_line": lambda: self._flat(w),
            "clipping": lambda: self._clipping(w),
            "lead_off": lambda: self._lead_off(w),
            "noise": lambda: self._noise(w),
            "baseline_wander": lambda: self._wander(w),
            "gain_change": lambda: self._gain(w),
            "lead_changed": lambda: self._polarity(w),
            "fs_mismatch": lambda: self._fs(w),
            "signal_gap": lambda: self._gap(w),
            "late_data": lambda: self._late(w),
        }
        raised = []
        flat = (w.max_mv - w.min_mv) < c.flat_range_mv
        for name, check in checks.items():
            # a flat line has no amplitude, noise or polarity to judge: only flat_line/lead_off
            evidence = check() if not flat or name in ("flat_line", "lead_off") else None
            alarm = self._step(name, w, evidence)
            if alarm is not None:
                raised.append(alarm)
        if not flat:
            self._history.append(w)
            for name, usual in self._usual_of.items():
                usual.append(getattr(w, name))
        self._previous = w
        return raised

    # -- episodes ----------------------------------------------------------------------------

    def _step(self, name: str, w: WindowStats, evidence: dict[str, Any] | None) -> Alarm | None:
        c, episode = self.config, self._episodes[name]
        # a gap or a rate error is proven by a single chunk; the others must persist
        if name in ("signal_gap", "fs_mismatch"):
            persist = 1
        elif name in INHIBITING_FAULTS:
            persist = c.persist_inhibiting
        elif name in CHANGE_FAULTS:
            persist = c.persist_change
        else:
            persist = c.persist
        if evidence is None:
            episode.run, episode.first = 0, None
            episode.calm += 1
            if episode.active and episode.calm >= c.clear:
                episode.active = False
                self.active.discard(name)
            return None
        episode.calm = 0
        episode.run += 1
        if episode.first is None:
            episode.first = w
        if episode.active or episode.run < persist:
            return None
        episode.active = True
        self.active.add(name)
        start = episode.first
        return Alarm(
            alarm_id=f"{self._id_prefix}:{name}:{start.first_sample}",
            device_id=self.device_id,
            kind=TECHNICAL_KIND,
            severity="medium",
            start_sample=start.first_sample,
            start_time=start.start_time,
            evidence={"fault": name, **evidence},
            category="technical",
            raised_sample=w.first_sample + w.n_samples,  # judged at the end of the chunk
        )

    # -- conditions (evidence dict when present, None when not) ------------------------------

    def _flat(self, w: WindowStats) -> dict[str, Any] | None:
        span = w.max_mv - w.min_mv
        if abs(w.median_mv) > self.config.lead_off_offset_mv:
            return None  # flat at a rail: the electrode is off (lead_off says so)
        return {"range_mv": round(span, 4)} if span < self.config.flat_range_mv else None

    def _clipping(self, w: WindowStats) -> dict[str, Any] | None:
        hit = w.at_extremes >= self.config.clipping_fraction
        return {"at_extremes": round(w.at_extremes, 3)} if hit else None

    def _lead_off(self, w: WindowStats) -> dict[str, Any] | None:
        c = self.config
        hit = abs(w.median_mv) > c.lead_off_offset_mv and w.amplitude_mv < c.lead_off_amplitude_mv
        return {"baseline_mv": round(w.median_mv, 3)} if hit else None

    def _noise(self, w: WindowStats) -> dict[str, Any] | None:
        c = self.config
        usual = self._usual("noise_mv")
        limit = max(c.noise_mv, c.noise_vs_own * usual) if usual is not None else c.noise_mv
        return {"noise_mv": round(w.noise_mv, 4)} if w.noise_mv > limit else None

    def _wander(self, w: WindowStats) -> dict[str, Any] | None:
        c = self.config
        recent = [h.median_mv for h in self._newest(c.wander_chunks - 1)]
        if len(recent) < c.wander_chunks - 1:
            return None
        spread = _pstdev([*recent, w.median_mv])
        enough = self._wander_sd.past >= c.min_history_chunks
        usual = self._wander_sd.median() if enough else 0.0
        self._wander_sd.append(spread)
        if not enough:
            return None
        limit = max(c.wander_mv, c.wander_vs_own * usual)
        return {"baseline_sd_mv": round(spread, 3)} if spread > limit else None

    def _gain(self, w: WindowStats) -> dict[str, Any] | None:
        c = self.config
        usual = self._usual("amplitude_mv")
        recent = self._recent(lambda h: h.amplitude_mv, w)
        if usual is None or recent is None or usual <= 0:
            return None
        ratio = recent / usual
        if ratio > c.gain_ratio or ratio < 1 / c.gain_ratio:
            return {"amplitude_ratio": round(ratio, 3)}
        return None

    def _polarity(self, w: WindowStats) -> dict[str, Any] | None:
        c = self.config
        usual = self._usual("polarity")
        recent = self._recent(lambda h: h.polarity, w)
        if usual is None or recent is None:
            return None
        flipped = abs(usual) >= c.polarity_min and abs(recent) >= c.polarity_min
        if flipped and (usual > 0) != (recent > 0):
            return {"polarity_before": round(usual, 3), "polarity_now": round(recent, 3)}
        return None

    def _fs(self, w: WindowStats) -> dict[str, Any] | None:
        previous = self._previous
        if previous is None or w.first_sample != previous.first_sample + previous.n_samples:
            return None
        declared = previous.n_samples / previous.fs
        elapsed = w.start_time - previous.start_time
        if declared <= 0 or elapsed <= 0:
            return None
        ratio = elapsed / declared
        if abs(ratio - 1) > self.config.fs_tolerance:
            return {"clock_vs_declared": round(ratio, 3), "declared_fs": previous.fs}
        return None

    def _gap(self, w: WindowStats) -> dict[str, Any] | None:
        previous = self._previous
        if previous is None:
            return None
        missing = w.first_sample - (previous.first_sample + previous.n_samples)
        if missing > self.config.gap_samples_s * w.fs:
            return {"missing_s": round(missing / w.fs, 2)}
        return None

    def _late(self, w: WindowStats) -> dict[str, Any] | None:
        end_ms = (w.start_time + w.n_samples / w.fs) * 1000
        delay_s = (w.published_ms - end_ms) / 1000
        return {"delay_s": round(delay_s, 1)} if delay_s > self.config.late_s else None

    # -- the device's own past ---------------------------------------------------------------

    def _usual(self, name: str) -> float | None:
        """Median over the history, excluding the most recent chunks (the present)."""
        usual = self._usual_of[name]
        return usual.median() if usual.past >= self.config.min_history_chunks else None

    def _recent(self, value: Callable[[WindowStats], float], w: WindowStats) -> float | None:
        c = self.config
        recent = [value(h) for h in self._newest(c.recent_chunks - 1)]
        if len(recent) < c.recent_chunks - 1:
            return None
        return statistics.median([*recent, value(w)])

    def _newest(self, n: int) -> list[WindowStats]:
        """The newest `n` chunks of the history (fewer if it is shorter), oldest first."""
        history = self._history
        return [history[i] for i in range(max(0, len(history) - n), len(history))]


USUAL_FIELDS = ("noise_mv", "amplitude_mv", "polarity")  # judged against the device's past


class TrailingMedian:
    """The median of the last `maxlen` values less the newest `skip` (the past, not the
    present), kept as a sorted list: one insertion and one removal per value instead of sorting
    ~120 values three times per chunk, and the same median `statistics.median` gives."""

    def __init__(self, maxlen: int, skip: int) -> None:
        self._values: deque[float] = deque(maxlen=maxlen)
        self._skip = skip
        self._sorted: list[float] = []

    @property
    def past(self) -> int:
        """How many values the median is over."""
        return len(self._sorted)

    def append(self, value: float) -> None:
        values = self._values
        if len(values) == values.maxlen and len(values) > self._skip:
            del self._sorted[bisect.bisect_left(self._sorted, values[0])]  # leaves the window
        values.append(value)
        if len(values) > self._skip:
            bisect.insort(self._sorted, values[-self._skip - 1])  # leaves the present

    def median(self) -> float:
        ordered, n = self._sorted, len(self._sorted)
        if n % 2:
            return ordered[n // 2]
        return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


BLOCK_S = 1.0  # what a device sends per message by default, and what offline paths judge


def judge_signal(
    device_id: str,
    x_mv: np.ndarray,
    fs: float,
    lead: str,
    first_sample: int = 0,
    config: QualityConfig | None = None,
) -> tuple[list[WindowStats], list[Alarm]]:
    """A whole record's or segment's analysed lead judged in 1-second blocks, as the stream
    judges a device sending 1-second chunks (times from the record's start)."""
    quality = DeviceQuality(device_id, config)
    step = round(BLOCK_S * fs)
    judged: list[WindowStats] = []
    alarms: list[Alarm] = []
    for begin in range(0, x_mv.size, step):
        block = x_mv[begin : begin + step]
        sample = first_sample + begin
        end_ms = round(1000 * (sample + block.size) / fs)
        w, raised = quality.judge(
            chunk_stats(device_id, sample, fs, lead, block, end_ms, sample / fs)
        )
        judged.append(w)
        alarms += raised
    return judged, alarms


def mark_monitor(monitor: RhythmMonitor, judged: list[WindowStats]) -> None:
    """Tell a rhythm monitor where the judged signal was unanalysable."""
    for w in judged:
        monitor.mark_signal(w.first_sample, inhibiting_fault(w.faults))


def _pstdev(values: list[float]) -> float:
    """Population standard deviation in floats: `statistics.pstdev` computes it exactly with
    fractions, which cost 5 % of a consumer's CPU here, for a few values once per chunk."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
