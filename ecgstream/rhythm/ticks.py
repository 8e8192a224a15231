"""The stream's clock for rhythm rules that cannot wait for a beat.

Asystole has no beat to report it, and in VF a beat detector finds nothing trustworthy: both are
judged on ticks, a fixed grid of stream positions, each with how long the detector has found no
QRS and, every second, the VF measures of the last seconds of signal. Ticks depend only on the
signal, never on how it was chunked, so the stream, `evaluate`, the REST API and the edge runner
raise these alarms at the same positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ecgstream.rhythm._ventricular import VfConfig, VfEvidence, vf_evidence

TICK_S = 0.25  # the grid: a pause or asystole is seen at most this late
VF_EVERY_TICKS = 4  # VF measures once a second
# a silence is checked on the other lead: its steep slopes in the silence against those in the
# seconds before the last QRS (QRS complexes are the steepest part of an ECG)
SILENCE_CHECK_FROM_S = 2.5
SILENCE_CHECK_UNTIL_S = 12.0
SILENCE_BEFORE_S = 4.0
OTHER_LEAD_ACTIVE_RATIO = 0.5
SLOPE_QUANTILE = 0.98


@dataclass(frozen=True)
class RhythmTick:
    sample: int  # device sample of the tick
    silent_since: int | None  # device sample of the last QRS before it (None: none yet)
    silent_s: float  # seconds since that QRS (or since the stream began)
    vf: VfEvidence | None  # every VF_EVERY_TICKS ticks, once a full window exists
    # in a silence of SILENCE_CHECK_FROM_S..UNTIL_S: does the other lead still show QRS
    # complexes (the detection lead lost its signal, the heart did not stop)? False with one
    # lead; None when not judged
    other_lead_active: bool | None = None


class RhythmClock:
    """Turns the detector's ticks (model-rate samples) into `RhythmTick`s with VF measures of
    the detection lead. It keeps the signal its next ticks still need (a window before the last
    tick): bounded while ticks are taken after every push, the whole record when pushed whole."""

    def __init__(self, model_fs: float, vf: VfConfig | None = None, n_leads: int = 1) -> None:
        self.model_fs = model_fs
        self.tick_samples = max(1, round(TICK_S * model_fs))
        self.vf_config = vf or VfConfig()
        self._window = round(self.vf_config.window_s * model_fs)
        self._keep = max(
            self._window, round((SILENCE_CHECK_UNTIL_S + SILENCE_BEFORE_S + 1) * model_fs)
        )
        self._two_leads = n_leads > 1
        self._signal = np.zeros((2 if self._two_leads else 1, 0))
        self._start = 0  # model sample of self._signal[:, 0]

    def add_signal(self, leads: np.ndarray) -> None:
        """(n_leads, n) at the model's rate: the detection lead first."""
        leads = np.atleast_2d(leads)[: self._signal.shape[0]]
        if leads.shape[0] < self._signal.shape[0]:
            leads = np.broadcast_to(leads[:1], (self._signal.shape[0], leads.shape[1]))
        self._signal = np.concatenate((self._signal, leads), axis=1)

    def _other_lead_active(self, position: int, last_peak: int | None) -> bool | None:
        if not self._two_leads:
            return False
        silent = position - (last_peak or 0)
        if last_peak is None or not (
            SILENCE_CHECK_FROM_S * self.model_fs <= silent <= SILENCE_CHECK_UNTIL_S * self.model_fs
        ):
            return None
        before = last_peak - round(SILENCE_BEFORE_S * self.model_fs)
        if before < self._start:
            return None
        lead = self._signal[1]
        margin = round(0.3 * self.model_fs)  # the last QRS and its T wave are not silence
        reference = np.abs(np.diff(lead[before - self._start : last_peak + margin - self._start]))
        quiet = np.abs(np.diff(lead[last_peak + margin - self._start : position - self._start]))
        if reference.size == 0 or quiet.size == 0:
            return None
        # a high quantile, not the maximum: QRS complexes are ~10 % of the samples, a single
        # step (a lead reconnected) is one
        steep_before = float(np.quantile(reference, SLOPE_QUANTILE))
        if steep_before <= 0:
            return None
        return bool(np.quantile(quiet, SLOPE_QUANTILE) >= OTHER_LEAD_ACTIVE_RATIO * steep_before)

    def ticks(
        self,
        detector_ticks: list[tuple[int, int | None]],
        to_device: Callable[[int], int],
    ) -> list[RhythmTick]:
        out = []
        for position, last_peak in detector_ticks:
            index = position // self.tick_samples
            vf = None
            lo = position - self._window
            if index % VF_EVERY_TICKS == 0 and lo >= self._start:
                segment = self._signal[0, lo - self._start : position - self._start]
                if segment.size == self._window:
                    vf = vf_evidence(segment, self.model_fs, self.vf_config)
            since = 0 if last_peak is None else last_peak
            out.append(
                RhythmTick(
                    sample=to_device(position),
                    silent_since=None if last_peak is None else to_device(last_peak),
                    silent_s=round((position - since) / self.model_fs, 4),
                    vf=vf,
                    other_lead_active=self._other_lead_active(position, last_peak),
                )
            )
        if detector_ticks:
            drop = detector_ticks[-1][0] - self._keep - self._start
            if drop > 0:
                self._signal = self._signal[:, drop:]
                self._start += drop
        return out
