"""One patient's stream: samples in, classifier-ready beats out.

This is the single implementation of preprocessing: the streaming consumers, `ecgstream
evaluate`, training, the REST API and the edge runner all run it, so their beats agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgstream.beats import BeatConfig, BeatExtractor, BeatWindow
from ecgstream.rhythm.ticks import RhythmClock, RhythmTick
from ecgstream.signal.detector import DetectorConfig, QrsDetector
from ecgstream.signal.resample import StreamingResampler

# leads in order of preference, chosen by name (MIT-BIH 114 has MLII second, 102/104 lack it)
PREFERRED_LEADS: tuple[str, ...] = ("MLII", "II", "V5", "V1", "V2", "V4")
# the second lead adds the view that tells S from N (P waves) and V morphology apart
SECOND_LEADS: tuple[str, ...] = ("V1", "V2", "V4", "V5", "MLII", "II")


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that decides what the model sees; stored in the model artifact."""

    model_fs: float = 360.0
    lead_preference: tuple[str, ...] = PREFERRED_LEADS
    second_lead_preference: tuple[str, ...] = SECOND_LEADS
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    beat: BeatConfig = field(default_factory=BeatConfig)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        detector = dict(data["detector"])
        detector["band_hz"] = tuple(detector["band_hz"])
        return cls(
            model_fs=float(data["model_fs"]),
            lead_preference=tuple(data["lead_preference"]),
            second_lead_preference=tuple(data.get("second_lead_preference", SECOND_LEADS)),
            detector=DetectorConfig(**detector),
            # artifacts written before these fields existed used one lead and the first set
            beat=BeatConfig(**{"feature_set": 1, "n_leads": 1, **data["beat"]}),
        )


@dataclass(frozen=True, slots=True, eq=False)
class DetectedBeat:
    """A beat with its position in the *device's* sample stream (the idempotency key)."""

    device_sample: int
    features: BeatWindow


class PatientStream:
    """Resample -> detect (first lead) -> cut beats (all leads), for one device, chunk by chunk.

    `push` takes (n_leads, n) millivolts in the order `choose_leads` gives, or one lead (n,)
    that then stands for every lead. With `rhythm`, it also keeps the clock of the rhythm rules
    that need no beat (asystole, pause, VF): `pop_ticks` after each push.
    """

    def __init__(
        self,
        fs: float,
        config: PreprocessConfig | None = None,
        start_sample: int = 0,
        rhythm: bool = False,
    ) -> None:
        self.config = config or PreprocessConfig()
        self.fs = fs
        self.start_sample = start_sample  # device sample index of the first sample pushed
        model_fs = self.config.model_fs
        self._resamplers = [
            StreamingResampler(fs, model_fs) for _ in range(self.config.beat.n_leads)
        ]
        self._clock = RhythmClock(model_fs, n_leads=self.config.beat.n_leads) if rhythm else None
        self._detector = QrsDetector(
            model_fs,
            self.config.detector,
            tick_samples=self._clock.tick_samples if self._clock else None,
        )
        beat = self.config.beat
        if beat.fs != model_fs:
            raise ValueError(f"beat config is for {beat.fs} Hz but the model runs at {model_fs} Hz")
        self._beats = BeatExtractor(beat)

    def push(self, x_mv: np.ndarray) -> list[DetectedBeat]:
        x = np.asarray(x_mv, dtype=np.float64)
        if x.ndim == 1:
            x = np.broadcast_to(x, (len(self._resamplers), x.size))
        if len(self._resamplers) == 1:  # the common case, without per-lead overhead
            leads = self._resamplers[0].push(x[0])[None, :]
        else:
            leads = np.stack([r.push(row) for r, row in zip(self._resamplers, x, strict=True)])
        if self._clock is not None:
            self._clock.add_signal(leads)
        return self._wrap(self._beats.push(leads, self._detector.push(leads[0])))

    def flush(self) -> list[DetectedBeat]:
        """End of stream: release everything still held back (the last beat has no next)."""
        released: list[BeatWindow] = []
        tail = np.stack([r.flush() for r in self._resamplers])
        if self._clock is not None:
            self._clock.add_signal(tail)
        if tail.shape[1]:
            released += self._beats.push(tail, self._detector.push(tail[0]))
        released += self._beats.flush(self._detector.flush())
        return self._wrap(released)

    def pop_ticks(self) -> list[RhythmTick]:
        """The rhythm clock's ticks decided since the last call (empty without `rhythm`)."""
        if self._clock is None:
            return []
        return self._clock.ticks(self._detector.pop_ticks(), self._device_sample)

    def _device_sample(self, model_sample: int) -> int:
        return self.start_sample + round(model_sample * self.fs / self.config.model_fs)

    def _wrap(self, beats: list[BeatWindow]) -> list[DetectedBeat]:
        return [DetectedBeat(self._device_sample(b.sample), b) for b in beats]


def choose_leads(available: tuple[str, ...] | list[str], config: PreprocessConfig) -> list[int]:
    """Indices of the detection lead and the second lead (the first again if none other)."""
    names = list(available)
    first = next((names.index(n) for n in config.lead_preference if n in names), None)
    if first is None:
        raise ValueError(f"none of the leads {list(config.lead_preference)} is in {names}")
    others = [names.index(n) for n in config.second_lead_preference if n in names]
    second = next((i for i in others if i != first), first)
    return [first, second][: config.beat.n_leads]
