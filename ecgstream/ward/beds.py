"""What the central station knows of each bed: the last minute of ECG (decimated for drawing),
the recent beats with their labels, heart rate, signal quality and whether the bed is on air.

Pure: the station hands it each decoded chunk and each beat it reads, with the wall time it
read them at, and asks it for a tile's summary, the strip points that are new since the last
push, or a bed's longer strip for the detail view. Memory is bounded by `keep_s` per bed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np

from ecgstream.wire import EcgChunk

STRIP_LEADS = ("MLII", "II", "V5", "V1")  # the lead a strip shows: the first of these present
RHYTHM_NAMES = {
    "asystole": "Asystole",
    "vfib": "VF",
    "vtach": "VT",
    "afib": "AF",
    "svt": "SVT",
    "brady": "Brady",
    "tachy": "Tachy",
    "pause": "Pause",
}


@dataclass(frozen=True)
class WardRules:
    strip_hz: float = 120.0  # drawn points per second (the screen has no use for 360)
    keep_s: float = 60.0  # the detail view's strip; tiles show the last `tile_s`
    tile_s: float = 10.0
    rate_window_s: float = 10.0  # heart rate from the RR intervals of this last stretch
    stale_after_s: float = 5.0  # no chunk for this long: the tile says "no signal"


@dataclass(frozen=True)
class StripBeat:
    sample: int
    time: float
    label: str
    analysable: bool
    fault: str | None
    rr_prev_s: float | None


class Bed:
    def __init__(self, device_id: str, rules: WardRules) -> None:
        self.device_id = device_id
        self.rules = rules
        capacity = math.ceil(rules.keep_s * rules.strip_hz) + 1
        self._times: deque[float] = deque(maxlen=capacity)
        self._mv: deque[float | None] = deque(maxlen=capacity)
        self._pending: list[tuple[float, float | None]] = []
        self._beats: deque[StripBeat] = deque()
        self._next_sample: int | None = None
        self._session: str | None = None
        self._last_chunk_at: float | None = None
        self._stream_time: float | None = None  # unix time of the newest sample
        self.lead: str | None = None
        self.fs: float | None = None

    # -- input --------------------------------------------------------------------------------

    def add_chunk(self, chunk: EcgChunk, now: float) -> None:
        """A chunk of this bed's samples; redelivered or overlapping parts are dropped."""
        self._last_chunk_at = now
        if chunk.session != self._session:  # a (re)booted device: its counters restart
            self._session, self._next_sample = chunk.session, None
            self._beats.clear()
        skip = 0
        if self._next_sample is not None:
            if chunk.end_sample <= self._next_sample:
                return
            skip = max(0, self._next_sample - chunk.first_sample)
            if chunk.first_sample > self._next_sample:
                self._append(chunk.start_time, None)  # a gap: the line breaks there
        lead = next((i for name in STRIP_LEADS if (i := chunk.lead_index(name)) is not None), 0)
        self.lead, self.fs = chunk.lead_names[lead], chunk.fs
        step = max(1, round(chunk.fs / self.rules.strip_hz))
        mv = chunk.millivolts()[lead, skip:]
        usable = (len(mv) // step) * step
        if usable:
            points = mv[:usable].reshape(-1, step).mean(axis=1)
            first = chunk.start_time + (skip + (step - 1) / 2) / chunk.fs
            times = first + np.arange(len(points)) * step / chunk.fs
            for t, value in zip(times.tolist(), points.tolist(), strict=True):
                self._append(t, round(value, 3))
        self._next_sample = chunk.first_sample + skip + usable
        self._stream_time = chunk.start_time + chunk.n_samples / chunk.fs

    def add_beat(self, beat: dict[str, Any]) -> None:
        """A beat from `ecg.beats` (its message format, ecgstream.messages.beat_message)."""
        if beat.get("session", "") != (self._session or beat.get("session", "")):
            return  # a beat of an earlier boot
        item = StripBeat(
            int(beat["sample"]),
            float(beat["time"]),
            str(beat["label"]),
            bool(beat.get("analysable", True)),
            beat.get("signal_fault"),
            None if beat.get("rr_prev_s") is None else float(beat["rr_prev_s"]),
        )
        if self._beats and item.sample <= self._beats[-1].sample:
            return  # a redelivery
        self._beats.append(item)
        while self._beats and item.time - self._beats[0].time > self.rules.keep_s:
            self._beats.popleft()

    def _append(self, t: float, value: float | None) -> None:
        self._times.append(t)
        self._mv.append(value)
        self._pending.append((t, value))

    # -- output -------------------------------------------------------------------------------

    @property
    def last_heard(self) -> float | None:
        """When the station last received a chunk of this bed (its clock), None if never."""
        return self._last_chunk_at

    def on_air(self, now: float) -> bool:
        return (
            self._last_chunk_at is not None and now - self._last_chunk_at < self.rules.stale_after_s
        )

    def heart_rate(self) -> int | None:
        """Beats per minute from the median RR of the analysable beats of the last stretch."""
        if not self._beats:
            return None
        newest = self._beats[-1].time
        rr = [
            b.rr_prev_s
            for b in self._beats
            if newest - b.time <= self.rules.rate_window_s
            and b.analysable
            and b.rr_prev_s is not None
            and b.rr_prev_s > 0
        ]
        return round(60 / median(rr)) if len(rr) >= 2 else None

    def signal(self, now: float) -> str:
        """ "analysable", the inhibiting fault of the newest beat, or "no signal"."""
        if not self.on_air(now):
            return "no signal"
        if self._beats and not self._beats[-1].analysable:
            return self._beats[-1].fault or "unanalysable"
        return "analysable"

    def ectopy(self, last_s: float = 60.0) -> dict[str, int]:
        """S and V beats of the last minute (what a nurse counts on a strip)."""
        if not self._beats:
            return {"S": 0, "V": 0}
        newest = self._beats[-1].time
        recent = [b.label for b in self._beats if newest - b.time <= last_s]
        return {"S": recent.count("S"), "V": recent.count("V")}

    def summary(self, now: float, rhythm_alarm: str | None) -> dict[str, Any]:
        """A tile: no patient identifier, only the bed (device) and what its signal shows."""
        return {
            "bed": self.device_id,
            "heart_rate": self.heart_rate(),
            "rhythm": RHYTHM_NAMES.get(rhythm_alarm or "", "no arrhythmia alarm"),
            "signal": self.signal(now),
            "on_air": self.on_air(now),
            "ectopy": self.ectopy(),
            "lead": self.lead,
            "stream_time": self._stream_time,
        }

    def take_new_points(self) -> tuple[list[float], list[float | None]]:
        """The strip points added since the last call (what a push carries)."""
        pending, self._pending = self._pending, []
        return [t for t, _ in pending], [v for _, v in pending]

    def strip(self, seconds: float) -> dict[str, Any]:
        """The last `seconds` of strip and the beats on it."""
        if not self._times:
            return {"t": [], "mv": [], "beats": []}
        start = self._times[-1] - seconds
        keep = [i for i, t in enumerate(self._times) if t >= start]
        times, mv = list(self._times), list(self._mv)
        return {
            "t": [round(times[i], 4) for i in keep],
            "mv": [mv[i] for i in keep],
            "beats": [
                {"time": round(b.time, 4), "label": b.label, "analysable": b.analysable}
                for b in self._beats
                if b.time >= start
            ],
        }


class Ward:
    """Every bed the station has heard from."""

    def __init__(self, rules: WardRules | None = None) -> None:
        self.rules = rules or WardRules()
        self.beds: dict[str, Bed] = {}

    def bed(self, device_id: str) -> Bed:
        bed = self.beds.get(device_id)
        if bed is None:
            bed = self.beds[device_id] = Bed(device_id, self.rules)
        return bed

    def add_chunk(self, chunk: EcgChunk, now: float) -> None:
        self.bed(chunk.device_id).add_chunk(chunk, now)

    def add_beat(self, beat: dict[str, Any]) -> None:
        self.bed(str(beat["device"])).add_beat(beat)
