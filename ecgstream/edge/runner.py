"""The edge runner's core: the server's streaming detector, features and alarm rules on one
device's samples, classified by the bundle's ONNX model, every result committed to the outbox.

Samples enter in `push`; beats come out of the same `PatientStream` the server's consumers use
and are classified here; results and alarms are stored in the outbox in one transaction with
the stream position, so a crash loses no acknowledged beat and repeats none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ecgstream.alarms import Alarm, AlarmConfig, RhythmMonitor
from ecgstream.class_join import alarm_events, classified_beats, read_classes
from ecgstream.edge.bundle import EdgeModel
from ecgstream.edge.outbox import Outbox
from ecgstream.messages import AlarmEvent, BeatResult, alarm_message, beat_message
from ecgstream.monitoring.signal_quality import DeviceQuality, mark_monitor
from ecgstream.signal.chunk_stats import chunk_stats
from ecgstream.stream import DetectedBeat, PatientStream, choose_leads

log = logging.getLogger("ecgstream.edge")

NEXT_SAMPLE = "next_sample"  # outbox state: the live stream's position after the last chunk


@dataclass
class RunStats:
    samples: int = 0
    beats: int = 0
    alarms: int = 0
    stored: int = 0  # rows new to the outbox (a replayed file adds none)
    classify_s: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)


class EdgeRunner:
    def __init__(
        self,
        model: EdgeModel,
        outbox: Outbox,
        device_id: str,
        patient_id: str,
        fs: float,
        lead_names: tuple[str, ...],
        start_sample: int = 0,
        time_origin: float | None = None,
    ) -> None:
        self.model = model
        self.outbox = outbox
        self.device_id = device_id
        self.patient_id = patient_id
        self.fs = fs
        try:
            self._leads = choose_leads(lead_names, model.preprocess)
        except ValueError as exc:
            raise ValueError(f"no usable lead: {exc}") from None
        self.lead = lead_names[self._leads[0]]
        self._stream = PatientStream(fs, model.preprocess, start_sample=start_sample, rhythm=True)
        self._monitor = RhythmMonitor(device_id, AlarmConfig(), fs=fs)
        self._quality = DeviceQuality(device_id)
        self._next_sample = start_sample
        self._last_beat: int | None = None
        # unix time of sample 0: results carry wall-clock times, like the server's
        self._origin = (time.time() if time_origin is None else time_origin) - start_sample / fs
        self.stats = RunStats()

    def push(self, x_mv: np.ndarray) -> tuple[list[BeatResult], list[AlarmEvent]]:
        received = time.time()
        x = np.asarray(x_mv, np.float32)[self._leads]
        first = self._next_sample
        self._next_sample += x.shape[1]
        self.stats.samples += x.shape[1]
        # the chunk's signal quality first: its beats and ticks read it (as in the server)
        # the runner is the device: its samples are on time by its own clock
        end_ms = round(1000 * (self._origin + self._next_sample / self.fs))
        judged, raised = self._quality.judge(
            chunk_stats(
                self.device_id, first, self.fs, self.lead, x[0], end_ms,
                self._origin + first / self.fs, self.patient_id,
            )
        )  # fmt: skip
        mark_monitor(self._monitor, [judged])
        technical = self._events(raised)
        return self._complete(self._stream.push(x), received, technical)

    def finish(self) -> tuple[list[BeatResult], list[AlarmEvent]]:
        """End of a finite input: the beats the detector still held back."""
        return self._complete(self._stream.flush(), time.time())

    def _events(self, raised: Sequence[Alarm]) -> list[AlarmEvent]:
        model = self.model.version
        return alarm_events(self._monitor, raised, self.patient_id, model, self._origin)

    def _complete(
        self, detected: list[DetectedBeat], received: float, technical: Sequence[AlarmEvent] = ()
    ) -> tuple[list[BeatResult], list[AlarmEvent]]:
        beats: list[BeatResult] = []
        alarms: list[AlarmEvent] = list(technical)
        for tick in self._stream.pop_ticks():  # silence and VF need no beat; before the beats
            time_s = self._origin + tick.sample / self.fs
            alarms += self._events(self._monitor.observe(tick, time_s))
        if detected:
            started = time.perf_counter()
            proba = self.model.predict_proba(
                np.stack([b.features.window for b in detected]),
                np.stack([b.features.rr for b in detected]),
            )
            self.stats.classify_s += time.perf_counter() - started
            labels, rounded = read_classes(proba, self.model.classes)
            classified = classified_beats(
                [b.device_sample for b in detected],
                labels,
                [b.features.second_lead_qrs for b in detected],
                self.fs,
                time_origin=self._origin,
                previous_sample=self._last_beat,
            )
            self._last_beat = classified[-1].sample
            now = time.time()
            for beat, probabilities in zip(classified, rounded, strict=True):
                beats.append(
                    BeatResult(
                        device_id=self.device_id,
                        patient_id=self.patient_id,
                        sample=beat.sample,
                        time_s=beat.time_s,
                        label=beat.label,
                        probabilities=probabilities,
                        model_version=self.model.version,
                        latency_ms=(now - received) * 1000,
                        rr_prev_s=beat.rr_prev_s,
                        signal_fault=self._monitor.fault_at(beat.sample),
                    )
                )
                alarms += self._events(self._monitor.add(beat))
        for event in alarms:
            # the alarm is raised here, on the device, whether or not a network exists
            alarm = event.alarm
            if event.is_end:
                log.warning("ALARM END %s at sample %d", alarm.kind, event.ended_sample)
                continue
            log.warning("ALARM %s %s at sample %d", alarm.severity, alarm.kind, alarm.start_sample)
        self.stats.beats += len(beats)
        self.stats.alarms += len(alarms)  # alarm messages: raised, and AF/VF episodes ended
        for b in beats:
            self.stats.labels[b.label] = self.stats.labels.get(b.label, 0) + 1
        self.stats.stored += self.outbox.add(
            [("beat", b.beat_id, beat_message(b, self.model.classes)) for b in beats]
            + [("alarm", _alarm_key(a), alarm_message(a)) for a in alarms],
            state={f"{NEXT_SAMPLE}:{self.device_id}": str(self._next_sample)},
        )
        return beats, alarms


def _alarm_key(event: AlarmEvent) -> str:
    """The outbox key: the alarm id, and for an episode's end the id with `:ended`."""
    return f"{event.alarm.alarm_id}:ended" if event.is_end else event.alarm.alarm_id
