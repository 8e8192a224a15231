"""Beat windows and RR features, cut in streaming form from detected R peaks.

What tells beat classes apart across patients (see shared/notes/field-anchors.md) is relative
to the patient: S beats are premature against *this* patient's rhythm, V beats look unlike
*this* patient's usual beat. So each beat carries:

- a window of the signal around the R peak, scaled by the patient's typical beat amplitude,
  and the window minus the patient's typical beat (the median of the last beats' windows);
- RR intervals (previous, next: one beat of look-ahead) with local and long-run averages and
  their ratios.

Feature set 2 (the recipe chosen by patient-wise cross-validation, docs/decisions.md) adds what
adapts to the patient at run time: RR intervals against the median of the patient's last 32
intervals (a reference that a run of ectopic beats does not drag along), the irregularity of the
rhythm (AF makes every beat "premature"), and morphology against the patient's *dominant* beat,
found by online clustering of the patient's beats (bounded: a few decaying clusters). The
dominant cluster's template replaces the median of the last beats, which a bigeminy splits.
Feature set 1 is the first recipe, kept so its artifacts reproduce exactly.

A beat is released once the next beat is known and its whole window has arrived, so the output
depends only on the signal, never on how it was chunked.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

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
# feature set 2 appends these (already on a log or unit scale: the network takes them as they are)
PATIENT_RR_FEATURES: tuple[str, ...] = (
    "log_pre_over_ref",  # ref: median of the patient's last RR intervals, this beat excluded
    "log_post_over_ref",
    "log_recent_over_ref",  # the last 4 intervals: runs (SVT, VT) against the patient's rhythm
    "log_pre_over_previous",  # sudden prematurity against the previous interval
    "rr_irregularity",  # median |successive RR difference| / ref over the last 16 intervals
    "cluster_share",  # how common this beat's shape is for this patient (decayed weights)
)
# per lead, the beat against the patient's dominant beat (the QRS is R - 100 ms .. R + 150 ms)
MORPHOLOGY_FEATURES: tuple[str, ...] = (
    "dominant_correlation",  # of the QRS
    "dominant_distance",  # RMS difference over the QRS, in units of the template's amplitude
    "log_amplitude_ratio",  # QRS peak-to-peak
    "log_width_ratio",  # samples above a quarter of the largest QRS excursion
    "log_slope_ratio",  # steepest QRS slope: ventricular beats conduct slowly
    "log_area_ratio",  # QRS area
    "peak_shift_s",  # where the largest excursion sits, against the template's
    "p_region_distance",  # RMS difference 250-80 ms before R: the P wave's region
    "t_region_distance",  # RMS difference 150-460 ms after R: the T wave's region
)


def feature_names(feature_set: int, n_leads: int = 1) -> tuple[str, ...]:
    """Names of the per-beat feature vector (`BeatWindow.rr`) of a feature set."""
    if feature_set == 1:
        return RR_FEATURES
    if feature_set == 2:
        morphology = tuple(
            f"{name}_lead{lead + 1}" for lead in range(n_leads) for name in MORPHOLOGY_FEATURES
        )
        return RR_FEATURES + PATIENT_RR_FEATURES + morphology
    raise ValueError(f"unknown feature set {feature_set}")


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
    n_leads: int = 2  # leads cut per beat: 1 = the detection lead; 2 adds a second lead
    feature_set: int = 2  # 1: RR features + median template; 2: adds the patient-relative ones
    reference_beats: int = 32  # RR reference: median of this many previous intervals
    irregularity_beats: int = 16
    qrs_before: int = 36  # morphology features look at R - 100 ms ...
    qrs_after: int = 54  # ... to R + 150 ms
    clusters: int = 6  # online morphology clusters kept per patient
    cluster_distance: float = 0.35  # a beat joins the nearest cluster closer than this
    cluster_decay: float = 0.995  # cluster weights decay per beat (a horizon of ~200 beats)
    cluster_rate: float = (
        0.05  # slowest template update (the first beats of a cluster move it more)
    )

    @property
    def channels(self) -> int:
        return 2 * self.n_leads

    @property
    def window(self) -> int:
        return self.before + self.after

    @property
    def qrs(self) -> slice:
        """The QRS region of a beat window, where the morphology measures look."""
        return slice(self.before - self.qrs_before, self.before + self.qrs_after)

    @property
    def n_features(self) -> int:
        return len(feature_names(self.feature_set, self.n_leads))


@dataclass(frozen=True, slots=True, eq=False)
class BeatWindow:
    """One beat ready for the classifier."""

    sample: int  # R peak, index in the (model-rate) stream
    # float32 (2 * n_leads, window): per lead, the scaled beat and the scaled beat minus the
    # patient's typical beat
    window: np.ndarray
    rr: np.ndarray  # float32 (n_features,): RR features, and the patient-relative ones (set 2)
    # QRS peak-to-peak in the last lead cut over the patient's typical beat there: a beat the
    # detector found in noise of the detection lead has little QRS in the other lead
    second_lead_qrs: float = 1.0

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
        self._reference_rr: deque[float] = deque(
            maxlen=max(c.reference_beats, c.irregularity_beats)
        )
        self._clusters = MorphologyClusters(c) if c.feature_set >= 2 else None

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
        if self._clusters is None:
            self._windows[self._n_windows % c.template_beats] = window
            self._n_windows += 1
            typical = _median_rows(self._windows[: min(self._n_windows, c.template_beats)])
        else:
            typical = self._clusters.dominant(window)
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
        if self._clusters is not None:
            extra = self._patient_features(window, typical, scale[:, 0], pre_v, post_v)
            rr = np.concatenate((rr, extra))
            if pre is not None:
                self._reference_rr.append(pre)
        self._previous_r = r
        stacked = np.empty((c.channels, c.window), dtype=np.float32)
        stacked[0::2] = window / scale
        stacked[1::2] = (window - typical) / scale
        second = _amplitude_ratio(window[-1, c.qrs], typical[-1, c.qrs])
        return BeatWindow(sample=r, window=stacked, rr=rr, second_lead_qrs=second)

    def _patient_features(
        self, window: np.ndarray, dominant: np.ndarray, scale: np.ndarray, pre: float, post: float
    ) -> np.ndarray:
        """PATIENT_RR_FEATURES and, per lead, MORPHOLOGY_FEATURES of one beat; `window` and
        `dominant` (n_leads, window) in mV, `scale` (n_leads,). The RR reference holds the
        intervals *before* this beat, so a premature beat is judged against the rhythm it
        interrupts. Plain floats for the few RR values (sorted() picks the same medians as a
        partition, and a left-to-right sum is what numpy does below 8 values)."""
        c = self.config
        history = list(self._reference_rr)
        reference = _median_of(history[-c.reference_beats :]) if history else pre
        recent = [*history[-3:], pre]
        previous = history[-1] if history else pre
        irregular = [*history[-(c.irregularity_beats - 1) :], pre]
        irregularity = (
            _median_of([abs(b - a) for a, b in pairwise(irregular)]) / reference
            if len(irregular) > 2
            else 0.0
        )
        ratios = np.log(
            [
                pre / reference,
                post / reference,
                sum(recent) / len(recent) / reference,
                pre / previous,
            ]
        )
        rr = [*ratios.tolist(), min(irregularity, 2.0), self._clusters.last_match]  # type: ignore[union-attr]
        morphology = _morphology(window, dominant, scale, c)
        return np.concatenate((np.array(rr, dtype=np.float32), morphology.ravel()))

    def _cut(self, r: int) -> np.ndarray:
        c = self.config
        lo = r - c.before - self._history_start
        hi = r + c.after - self._history_start
        segment = self._history[:, max(0, lo) : max(0, hi)]
        if lo < 0:  # a beat at the very start of the stream: pad with its first values
            pad = segment[:, :1] if segment.shape[1] else np.zeros((c.n_leads, 1))
            segment = np.concatenate((np.repeat(pad, -lo, axis=1), segment), axis=1)
        return segment - _row_medians(segment)[:, None]

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


class MorphologyClusters:
    """The patient's beat shapes, clustered online: each beat joins the nearest template (RMS
    distance over the QRS, relative to the template's amplitude) or starts a new one in place
    of the lightest. Weights decay per beat, so the *dominant* template is the patient's usual
    beat of the last few minutes, whatever share of ectopic beats there is. Bounded memory
    (`clusters` templates) and deterministic, so the stream and whole records agree."""

    def __init__(self, config: BeatConfig) -> None:
        self.config = config
        k = config.clusters
        self._templates = np.zeros((k, config.n_leads, config.window))
        self._weights = np.zeros(k)
        self._members = np.zeros(k)
        self._qrs = config.qrs
        self.last_match = 1.0  # share of the weight of the cluster the last beat joined

    def dominant(self, window: np.ndarray) -> np.ndarray:
        """The dominant template before `window` joins (the beat itself for the first beat),
        then add `window` to its cluster."""
        c = self.config
        used = self._weights > 0
        candidates = used.nonzero()[0]
        if not candidates.size:
            self._add(0, window, new=True)
            return window.copy()
        dominant = self._templates[int(self._weights.argmax())].copy()
        x = window[0, self._qrs]
        t = self._templates[candidates, 0, self._qrs]
        span = np.maximum(t.max(axis=1) - t.min(axis=1), c.min_scale_mv)
        distance = np.sqrt(((t - x) ** 2).sum(axis=1) / t.shape[1]) / span
        best = int(distance.argmin())
        if distance[best] < c.cluster_distance:
            self._add(int(candidates[best]), window, new=False)
        else:
            free = np.flatnonzero(~used)
            self._add(
                int(free[0]) if free.size else int(np.argmin(self._weights)), window, new=True
            )
        return dominant

    def _add(self, index: int, window: np.ndarray, new: bool) -> None:
        c = self.config
        self._weights *= c.cluster_decay
        if new:
            self._templates[index] = window
            self._weights[index] = 1.0
            self._members[index] = 1.0
        else:
            self._members[index] += 1.0
            rate = max(1.0 / self._members[index], c.cluster_rate)
            self._templates[index] += rate * (window - self._templates[index])
            self._weights[index] += 1.0
        self.last_match = float(self._weights[index] / self._weights.sum())


def _amplitude_ratio(x: np.ndarray, typical: np.ndarray) -> float:
    """Peak-to-peak of a beat's QRS over the typical beat's (both floored at 1 µV)."""
    return max(float(x.max() - x.min()), 1e-3) / max(float(typical.max() - typical.min()), 1e-3)


def _morphology(
    beat: np.ndarray, dominant: np.ndarray, scale: np.ndarray, c: BeatConfig
) -> np.ndarray:
    """MORPHOLOGY_FEATURES of every lead at once, float32 (n_leads, 9): `beat` and `dominant`
    (n_leads, window) in mV, `scale` (n_leads,). The beat's and the template's QRS are stacked
    and reduced row-wise (numpy reduces each row as it reduces one array), so the values are
    those of one lead at a time, for a quarter of the calls: this runs for every beat."""
    leads = len(beat)
    qrs = np.concatenate(
        (beat[:, c.qrs], dominant[:, c.qrs])
    )  # the beat's rows, then the template's
    n = qrs.shape[1]
    centred = qrs - (qrs.sum(axis=1) / n)[:, None]
    magnitude = np.abs(centred)
    spread = qrs.max(axis=1) - qrs.min(axis=1)
    steepest = np.abs(np.diff(qrs, axis=1)).max(axis=1)
    area = magnitude.sum(axis=1)
    peak = magnitude.argmax(axis=1)
    width = _widths(qrs)
    out = np.empty((leads, len(MORPHOLOGY_FEATURES)))
    for lead in range(leads):
        x, d = centred[lead], centred[leads + lead]
        norm = math.sqrt(float(x @ x) * float(d @ d))
        out[lead, 0] = float(x @ d) / norm if norm > 1e-12 else 0.0

    def ratio(value: np.ndarray, floor: float) -> np.ndarray:
        return np.maximum(value[:leads], floor) / np.maximum(value[leads:], floor)

    out[:, 2:6] = np.log(
        (
            ratio(spread, 1e-3),
            width[:leads] / width[leads:],
            ratio(steepest, 1e-4),
            ratio(area, 1e-3),
        )
    ).T
    out[:, 6] = (peak[:leads] - peak[leads:]) / c.fs
    squared = (beat - dominant) ** 2
    p = slice(0, max(1, c.before - 29))  # the window starts 250 ms before R
    t = slice(c.before + 54, c.window)
    regions = [squared[:, r].sum(axis=1) / (r.stop - r.start) for r in (c.qrs, p, t)]
    distance = np.minimum(np.sqrt(regions) / scale, 5.0)
    out[:, 1], out[:, 7], out[:, 8] = distance
    return out.astype(np.float32)


def _widths(x: np.ndarray) -> np.ndarray:
    """Per row: samples where the QRS is above a quarter of its largest excursion (at least 1)."""
    centred = np.abs(x - _row_medians(x)[:, None])
    wide = (centred > 0.25 * centred.max(axis=1)[:, None]).sum(axis=1)
    return np.maximum(1.0, wide)


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """`_median` of each row, in one partition."""
    n = rows.shape[1]
    half = n // 2
    if n % 2:
        return np.partition(rows, half, axis=1)[:, half]
    part = np.partition(rows, (half - 1, half), axis=1)
    return 0.5 * (part[:, half - 1] + part[:, half])


def _median_of(values: list[float]) -> float:
    """The median of a few floats, as `_median` gives it."""
    ordered = sorted(values)
    half = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[half]
    return 0.5 * (ordered[half - 1] + ordered[half])


def _median_rows(rows: np.ndarray) -> np.ndarray:
    """Column-wise median of a few rows."""
    n = rows.shape[0]
    half = n // 2
    if n % 2:
        return np.partition(rows, half, axis=0)[half]
    part = np.partition(rows, (half - 1, half), axis=0)
    return 0.5 * (part[half - 1] + part[half])
