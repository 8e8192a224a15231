"""What the monitor knows: the fleet's signal quality (judged by the stream), physiology, drift.

Pure logic (no Ray, Kafka or Prometheus), so the drift benchmark and the tests drive exactly
the code the monitor actor runs.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from ecgstream.monitoring.drift import DriftConfig, FleetDrift
from ecgstream.signal.chunk_stats import WindowStats

RR_HISTORY_BEATS = 30  # heart rate and RR variability over the last 30 beats


@dataclass(frozen=True)
class BeatSummary:
    """A classified batch's beats as the monitor needs them (columnar, small to send)."""

    device_ids: list[str]
    labels: list[str]
    probabilities: np.ndarray  # (n, n_classes)
    features: np.ndarray  # (n, len(SUMMARY_FEATURES))
    rr_prev_s: np.ndarray  # (n,), NaN for a device's first beat
    stream_time: np.ndarray  # (n,) unix time of each R peak (device clock)


@dataclass(frozen=True)
class WindowSummary:
    """A batch's signal windows as the monitor needs them: each device's verdict after its
    last chunk, the faults raised, and chunk counts. A few bytes per device instead of every
    chunk's statistics over Ray (the monitor cost more CPU than a consumer when it got those)."""

    windows: int
    faults_by_device: dict[str, tuple[str, ...]]
    chunks_by_device: dict[str, int]
    raised: list[str]

    @classmethod
    def of(cls, windows: list[WindowStats]) -> WindowSummary:
        faults: dict[str, tuple[str, ...]] = {}
        chunks: Counter[str] = Counter()
        raised: list[str] = []
        for w in windows:  # in arrival order: a device's last verdict stands
            faults[w.device_id] = w.faults
            chunks[w.device_id] += 1
            raised += w.raised
        return cls(len(windows), faults, dict(chunks), raised)


@dataclass
class _Physiology:
    rr: deque[float] = field(default_factory=lambda: deque(maxlen=RR_HISTORY_BEATS))

    def heart_rate_bpm(self) -> float | None:
        return 60.0 * len(self.rr) / sum(self.rr) if len(self.rr) >= 3 else None

    def rmssd_s(self) -> float | None:
        if len(self.rr) < 4:
            return None
        rr = list(self.rr)
        return math.sqrt(sum((b - a) ** 2 for a, b in pairwise(rr)) / (len(rr) - 1))


class FleetMonitor:
    def __init__(self, reference: dict[str, Any], drift: DriftConfig | None = None) -> None:
        self._drift_config = drift
        self.drift = FleetDrift(reference, drift)
        self._devices: dict[str, tuple[str, ...]] = {}  # device -> its active sensor faults
        self._physiology: dict[str, _Physiology] = {}

        self.windows = 0
        self.beats = 0
        self.faults_raised: Counter[str] = Counter()

    def use_reference(self, reference: dict[str, Any]) -> None:
        """A new model: drift is judged against its reference from now on (the windows
        collected under the old model are not mixed in). Signal quality is model-independent."""
        self.drift = FleetDrift(reference, self._drift_config)

    def observe_windows(self, windows: WindowSummary | list[WindowStats]) -> list[str]:
        """Chunk statistics with the stream's quality verdicts (or their summary), in arrival
        order; returns the faults newly raised (the consumers judged them and wrote their
        technical alarms)."""
        summary = windows if isinstance(windows, WindowSummary) else WindowSummary.of(windows)
        self._devices.update(summary.faults_by_device)
        self.faults_raised.update(summary.raised)
        self.windows += summary.windows
        return list(summary.raised)

    def observe_beats(self, beats: BeatSummary) -> list[dict[str, Any]]:
        """Classified beats; returns drift flag changes."""
        for device_id, rr in zip(beats.device_ids, beats.rr_prev_s.tolist(), strict=True):
            if rr is not None and math.isfinite(rr) and 0.2 < rr < 3.0:
                self._physiology.setdefault(device_id, _Physiology()).rr.append(rr)
        self.beats += len(beats.labels)
        latest = float(beats.stream_time.max()) if len(beats.stream_time) else 0.0
        return self.drift.add(
            beats.device_ids, beats.labels, beats.probabilities, beats.features, latest
        )

    # -- read-outs ---------------------------------------------------------------------------

    def device_count(self) -> int:
        return len(self._devices)

    def active_faults(self) -> Counter[str]:
        """Devices currently in each fault (counts only: no device ids leave as labels)."""
        counts: Counter[str] = Counter()
        for faults in self._devices.values():
            counts.update(faults)
        return counts

    # read by the metrics endpoint's thread while beats arrive: iterate over a copy (taken in
    # one C call, so no insertion can interleave)

    def heart_rates(self) -> list[float]:
        devices = list(self._physiology.values())
        return [hr for p in devices if (hr := p.heart_rate_bpm()) is not None]

    def rr_variability(self) -> list[float]:
        devices = list(self._physiology.values())
        return [v for p in devices if (v := p.rmssd_s()) is not None]

    def summary(self) -> dict[str, Any]:
        state = self.drift.state
        rates = self.heart_rates()
        return {
            "devices": len(self._devices),
            "windows": self.windows,
            "beats": self.beats,
            "active_faults": dict(self.active_faults()),
            "faults_raised": dict(self.faults_raised),
            "data_drift": state.data_drift,
            "prediction_drift": state.prediction_drift,
            "max_feature_psi": max(
                (v for f in state.feature_psi.values() for v in f.values()), default=0.0
            ),
            "class_mix_psi": round(state.mix_psi, 4),
            "class_mix": state.class_mix,
            "mean_confidence": round(state.mean_confidence, 4),
            "mean_entropy": round(state.mean_entropy, 4),
            "median_heart_rate_bpm": round(float(np.median(rates)), 1) if rates else None,
        }
