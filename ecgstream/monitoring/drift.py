"""Fleet-wide drift of the model's inputs and outputs against the artifact's reference.

*Data drift* is judged per predicted class: the features of beats the model calls N are
compared with the reference's N beats, and so on. A ward with more ectopic beats then changes
the class mix (*prediction drift*) without moving any class's feature distribution, so the two
are reported apart. Distances are population stability indices (PSI) over the reference's
quantile bins. False alarms are controlled by one threshold for the maximum over all
(class, feature) tests, calibrated on clean replays (`ecgstream bench drift`), and by
requiring the excess on `persist` consecutive evaluations.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ecgstream.beats import RR_FEATURES

# the summary features of artifact.reference_statistics, in this order
SUMMARY_FEATURES = (*RR_FEATURES, "beat_peak_to_peak", "template_deviation")
# judged for drift: the ratios and the beat shape; absolute RR intervals are patient
# physiology (heart rate) and are reported as such, not as data drift
DRIFT_FEATURES = (
    "pre_over_local",
    "post_over_local",
    "pre_over_long",
    "pre_over_post",
    "beat_peak_to_peak",
    "template_deviation",
)
EPS = 1e-4


def summary_features(windows: np.ndarray, rr: np.ndarray) -> np.ndarray:
    """(n, len(SUMMARY_FEATURES)) float32: what the monitor receives per beat."""
    peak = windows[:, 0].max(axis=1) - windows[:, 0].min(axis=1)
    deviation = np.sqrt((windows[:, 1] ** 2).mean(axis=1))
    # the RR features lead every feature set; the patient-relative ones are not monitored
    return np.column_stack([rr[:, : len(RR_FEATURES)], peak, deviation]).astype(np.float32)


def psi(values: np.ndarray, quantiles: list[float], levels: list[float]) -> float:
    """PSI of `values` against a reference given by its quantiles at `levels`.

    Bins end at the reference's distinct inner quantiles; a tied quantile (a point mass) puts
    its whole mass in the bin that ends there."""
    q = np.asarray(quantiles, dtype=float)
    lv = np.asarray(levels, dtype=float)
    inner = np.unique(q)[1:-1]
    cdf = lv[np.searchsorted(q, inner, side="right") - 1]  # reference mass up to each edge
    expected = np.clip(np.diff(np.concatenate(([0.0], cdf, [1.0]))), EPS, None)
    counts = np.bincount(np.searchsorted(inner, values, side="left"), minlength=len(inner) + 1)
    observed = np.clip(counts / max(counts.sum(), 1), EPS, None)
    return float(np.sum((observed - expected) * np.log(observed / expected)))


@dataclass(frozen=True)
class DriftConfig:
    window_beats: int = 2000  # per predicted class
    mix_window_beats: int = 1000  # for the class mix, confidence and entropy
    min_class_beats: int = 300  # a class with fewer beats in its window is not judged
    min_class_devices: int = 8  # ... or with beats from fewer devices
    max_device_share: float = 0.25  # ... or with one device behind more than this share
    evaluate_every: int = 250  # beats between evaluations
    feature_psi: float = 0.35  # data drift: max PSI over (class, feature) above this
    # classes whose drift raises the flag: on clean DS1 replays the windows of V and F beats
    # come from a handful of patients at a time and reach PSI 0.3-1.2 without any drift;
    # their PSI is still computed and exported
    judged_classes: tuple[str, ...] = ("N", "S")
    mix_psi: float = 0.10  # prediction drift: PSI of the class mix above this
    confidence_drop: float = 0.10  # ... or mean confidence this far below the reference
    persist: int = 3  # consecutive evaluations


@dataclass
class DriftState:
    data_drift: bool = False
    prediction_drift: bool = False
    feature_psi: dict[str, dict[str, float]] = field(default_factory=dict)  # class -> feature
    mix_psi: float = 0.0
    mix_chi2_p: float = 1.0
    class_mix: dict[str, float] = field(default_factory=dict)
    mean_confidence: float = 0.0
    mean_entropy: float = 0.0
    beats_judged: int = 0


class FleetDrift:
    """Feed classified beats with `add`; read `state`; `events` lists flag changes."""

    def __init__(self, reference: dict[str, Any], config: DriftConfig | None = None) -> None:
        self.reference = reference
        self.config = config or DriftConfig()
        self.classes = tuple(reference["class_mix"])
        n = self.config.window_beats
        self._per_class: dict[str, deque[Any]] = {c: deque(maxlen=n) for c in self.classes}
        self._class_devices: dict[str, deque[str]] = {c: deque(maxlen=n) for c in self.classes}
        m = self.config.mix_window_beats
        self._labels: deque[str] = deque(maxlen=m)
        self._confidence: deque[float] = deque(maxlen=m)
        self._entropy: deque[float] = deque(maxlen=m)
        self._since_evaluation = 0
        self._runs = {"data": 0, "prediction": 0}
        self.state = DriftState()
        self.events: list[dict[str, Any]] = []

    def add(
        self,
        device_ids: list[str],
        labels: list[str],
        probabilities: np.ndarray,
        features: np.ndarray,
        stream_time: float,
    ) -> list[dict[str, Any]]:
        """Beats in arrival order; returns the flag changes this batch caused."""
        columns = [SUMMARY_FEATURES.index(f) for f in DRIFT_FEATURES]
        for label, row, device in zip(labels, features[:, columns], device_ids, strict=True):
            if label in self._per_class:
                self._per_class[label].append(row)
                self._class_devices[label].append(device)
        self._labels.extend(labels)
        if len(probabilities):
            p = np.clip(probabilities, 1e-12, 1.0)
            self._confidence.extend(p.max(axis=1).tolist())
            self._entropy.extend((-(p * np.log(p)).sum(axis=1)).tolist())
        self._since_evaluation += len(labels)
        if self._since_evaluation < self.config.evaluate_every:
            return []
        self._since_evaluation = 0
        return self._evaluate(stream_time)

    def _evaluate(self, stream_time: float) -> list[dict[str, Any]]:
        c, ref = self.config, self.reference
        levels = ref["quantile_levels"]
        state = self.state
        state.feature_psi = {}
        for name, rows in self._per_class.items():
            reference = ref["per_predicted_class"].get(name, {})
            if len(rows) < c.min_class_beats or reference.get("count", 0) < c.min_class_beats:
                continue
            # a class seen in a few patients only says more about them than about drift
            shares = Counter(self._class_devices[name])
            if len(shares) < c.min_class_devices or max(shares.values()) > c.max_device_share * len(
                rows
            ):
                continue
            values = np.asarray(rows)
            state.feature_psi[name] = {
                feature: round(psi(values[:, i], reference["features"][feature], levels), 4)
                for i, feature in enumerate(DRIFT_FEATURES)
            }
        worst = max(
            (
                v
                for name, f in state.feature_psi.items()
                if name in c.judged_classes
                for v in f.values()
            ),
            default=0.0,
        )
        seen = Counter(self._labels)
        counts = np.array([seen[k] for k in self.classes], float)
        expected = np.array([ref["class_mix"][k] for k in self.classes], float)
        state.beats_judged = int(counts.sum())
        if counts.sum() >= c.min_class_beats:
            observed = counts / counts.sum()
            state.class_mix = dict(zip(self.classes, observed.round(4).tolist(), strict=True))
            o, e = np.clip(observed, EPS, None), np.clip(expected, EPS, None)
            state.mix_psi = float(np.sum((o - e) * np.log(o / e)))
            state.mix_chi2_p = float(stats.chisquare(counts, expected * counts.sum()).pvalue)
            state.mean_confidence = float(np.mean(self._confidence))
            state.mean_entropy = float(np.mean(self._entropy))
        prediction_excess = state.mix_psi > c.mix_psi or (
            state.mean_confidence > 0
            and state.mean_confidence < ref["mean_confidence"] - c.confidence_drop
        )
        events = []
        for kind, excess in (("data", worst > c.feature_psi), ("prediction", prediction_excess)):
            self._runs[kind] = self._runs[kind] + 1 if excess else 0
            flag = f"{kind}_drift"
            active = getattr(state, flag)
            if not active and self._runs[kind] >= c.persist:
                setattr(state, flag, True)
                events.append({"drift": kind, "raised": True, "stream_time": stream_time})
            elif active and self._runs[kind] == 0:
                setattr(state, flag, False)
                events.append({"drift": kind, "raised": False, "stream_time": stream_time})
        self.events.extend(events)
        return events
