"""What a consumer does with a batch of Kafka messages, without the I/O.

decode + validate -> per-device stream (filter, detector, beat features) -> [inference, done by
the caller] -> join -> rhythm alarms. Kept free of Kafka, Ray and asyncpg so the delivery logic
around it stays thin and this part is tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ecgstream.alarms import AlarmConfig, ClassifiedBeat, RhythmMonitor
from ecgstream.errors import RejectReason, WireFormatError
from ecgstream.messages import AlarmEvent, BeatResult
from ecgstream.rhythm.ticks import RhythmTick
from ecgstream.stream import PatientStream, PreprocessConfig, choose_leads
from ecgstream.wire import EcgChunk, decode_chunk


@dataclass(frozen=True)
class InputMessage:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int  # when the producer sent it (for end-to-end latency)
    replay: bool = False  # re-read to rebuild state: its outputs were already written


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    reason: str
    detail: str


@dataclass(frozen=True, eq=False)
class PendingBeat:
    """A beat cut from the signal, waiting for its class."""

    device_id: str
    patient_id: str
    sample: int
    time_s: float
    rr_prev_s: float | None
    window: np.ndarray
    rr: np.ndarray
    published_ms: int
    replay: bool


@dataclass(frozen=True)
class PendingTick:
    """A tick of a device's rhythm clock (silence, VF), judged after the batch's beats."""

    device_id: str
    patient_id: str
    tick: RhythmTick
    time_s: float  # the device's clock at the tick (unix seconds)
    replay: bool


@dataclass
class _Device:
    partition: int
    patient_id: str
    fs: float
    lead: str
    stream: PatientStream
    monitor: RhythmMonitor
    next_sample: int  # first_sample expected of the next chunk
    time_origin: float  # unix time of device sample 0
    last_beat: int | None = None


@dataclass(frozen=True)
class WindowStats:
    """Signal statistics of one chunk of the analysed lead, for the monitor."""

    device_id: str
    first_sample: int
    n_samples: int
    fs: float
    lead: str
    mean_mv: float
    std_mv: float
    min_mv: float
    max_mv: float
    at_extremes: float  # fraction of samples at the chunk's raw min or max (clipping hint)
    published_ms: int
    start_time: float = 0.0  # the device's clock at the first sample (unix seconds)
    median_mv: float = 0.0  # the baseline level (robust to the QRS)
    amplitude_mv: float = 0.0  # 99th minus 1st percentile: about the QRS amplitude
    noise_mv: float = 0.0  # high-frequency noise, robust: MAD of second differences
    polarity: float = 0.0  # (up - down) / range around the median: > 0 for upright QRS
    patient_id: str = ""  # pseudonymous reference, for the technical alarms' rows


def window_stats(
    chunk: EcgChunk, lead_index: int, x_mv: np.ndarray, published_ms: int
) -> WindowStats:
    raw = chunk.samples[lead_index]
    at_extremes = float(np.mean((raw == raw.min()) | (raw == raw.max())))
    ordered = np.sort(x_mv)
    n = ordered.size
    low, median, high = ordered[n // 100], ordered[n // 2], ordered[min(n - 1, n * 99 // 100)]
    lowest, highest = ordered[0], ordered[-1]
    second = np.diff(x_mv, 2) if n > 2 else np.zeros(1, np.float32)
    # white noise of sd s gives second differences of sd s*sqrt(6); the median ignores QRS
    noise = 1.4826 * float(np.median(np.abs(second))) / math.sqrt(6.0)
    span = float(highest - lowest)
    polarity = float((highest - median) - (median - lowest)) / span if span > 0 else 0.0
    return WindowStats(
        device_id=chunk.device_id,
        first_sample=chunk.first_sample,
        n_samples=chunk.n_samples,
        fs=chunk.fs,
        lead=chunk.lead_names[lead_index],
        mean_mv=float(x_mv.mean()),
        std_mv=float(x_mv.std()),
        min_mv=float(lowest),
        max_mv=float(highest),
        at_extremes=at_extremes,
        published_ms=published_ms,
        start_time=chunk.start_time,
        median_mv=float(median),
        amplitude_mv=float(high - low),
        noise_mv=noise,
        polarity=polarity,
        patient_id=chunk.patient_id,
    )


@dataclass
class Ingested:
    beats: list[PendingBeat] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    windows: list[WindowStats] = field(default_factory=list)
    ticks: list[PendingTick] = field(default_factory=list)
    chunks: int = 0
    duplicates: int = 0


class StreamProcessor:
    """Per-device state for the devices of the partitions one consumer owns."""

    def __init__(
        self, preprocess: PreprocessConfig, alarm_config: AlarmConfig | None = None
    ) -> None:
        self.preprocess = preprocess
        self.alarm_config = alarm_config or AlarmConfig()
        self._devices: dict[str, _Device] = {}

    @property
    def devices(self) -> int:
        return len(self._devices)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the state of devices on partitions this consumer no longer owns."""
        for name in [n for n, d in self._devices.items() if d.partition in partitions]:
            del self._devices[name]

    def ingest(self, messages: Sequence[InputMessage]) -> Ingested:
        out = Ingested()
        for message in messages:
            try:
                chunk = decode_chunk(message.value)
                if message.key is not None and message.key != chunk.device_id.encode():
                    raise WireFormatError(
                        RejectReason.INVALID_VALUE, "message key is not the chunk's device id"
                    )
                lead_indices = self._leads(chunk)
            except WireFormatError as exc:
                out.dead_letters.append(
                    DeadLetter(message.partition, message.offset, exc.reason.value, exc.detail)
                )
                continue
            device = self._device(chunk, message.partition)
            if chunk.first_sample < device.next_sample:
                out.duplicates += 1  # already seen (a producer retry or a replay overlap)
                continue
            if chunk.first_sample > device.next_sample or chunk.fs != device.fs:
                device = self._restart(chunk, message.partition)  # a gap: history is useless
            out.chunks += 1
            device.next_sample = chunk.end_sample
            device.time_origin = chunk.start_time - chunk.first_sample / chunk.fs
            x = chunk.millivolts()[lead_indices]
            if not message.replay:
                out.windows.append(window_stats(chunk, lead_indices[0], x[0], message.timestamp_ms))
            for beat in device.stream.push(x):
                rr_prev = (
                    (beat.device_sample - device.last_beat) / device.fs
                    if device.last_beat is not None
                    else None
                )
                device.last_beat = beat.device_sample
                out.beats.append(
                    PendingBeat(
                        device_id=chunk.device_id,
                        patient_id=chunk.patient_id,
                        sample=beat.device_sample,
                        time_s=device.time_origin + beat.device_sample / device.fs,
                        rr_prev_s=rr_prev,
                        window=beat.features.window,
                        rr=beat.features.rr,
                        published_ms=message.timestamp_ms,
                        replay=message.replay,
                    )
                )
            out.ticks += [
                PendingTick(
                    chunk.device_id,
                    chunk.patient_id,
                    tick,
                    device.time_origin + tick.sample / device.fs,
                    message.replay,
                )
                for tick in device.stream.pop_ticks()
            ]
        return out

    def complete(
        self,
        beats: Sequence[PendingBeat],
        probabilities: np.ndarray,
        classes: Sequence[str],
        model_version: str,
        now_ms: float,
        ticks: Sequence[PendingTick] = (),
    ) -> tuple[list[BeatResult], list[AlarmEvent]]:
        """Run the clock's rules (silence, VF) on the batch's ticks, then join classes to beats
        and run the beat rules; what is replayed updates state only."""
        results: list[BeatResult] = []
        alarms: list[AlarmEvent] = []
        labels = np.asarray(classes)[probabilities.argmax(axis=1)] if len(beats) else []
        for pending in ticks:
            device = self._devices.get(pending.device_id)
            if device is None:
                continue
            raised = device.monitor.observe(pending.tick, pending.time_s)
            if not pending.replay:
                alarms.extend(AlarmEvent(a, pending.patient_id, model_version) for a in raised)
        for beat, label, proba in zip(beats, labels, probabilities, strict=True):
            device = self._devices.get(beat.device_id)
            raised = (
                device.monitor.add(
                    ClassifiedBeat(beat.sample, beat.time_s, str(label), beat.rr_prev_s)
                )
                if device is not None
                else []
            )
            if beat.replay:
                continue
            alarms.extend(AlarmEvent(a, beat.patient_id, model_version) for a in raised)
            results.append(
                BeatResult(
                    device_id=beat.device_id,
                    patient_id=beat.patient_id,
                    sample=beat.sample,
                    time_s=beat.time_s,
                    label=str(label),
                    probabilities=tuple(round(float(p), 5) for p in proba),
                    model_version=model_version,
                    latency_ms=max(0.0, now_ms - beat.published_ms),
                    rr_prev_s=beat.rr_prev_s,
                )
            )
        return results, alarms

    def complete_with(
        self,
        ingested: Ingested,
        predict_proba: Callable[[np.ndarray, np.ndarray], np.ndarray],
        classes: Sequence[str],
        model_version: str,
        now_ms: float = 0.0,
    ) -> tuple[list[BeatResult], list[AlarmEvent]]:
        """`complete` for a caller that classifies in-process (offline references, benches):
        one batch of the ingested beats through `predict_proba`, with the batch's ticks."""
        if ingested.beats:
            probabilities = predict_proba(
                np.stack([b.window for b in ingested.beats]),
                np.stack([b.rr for b in ingested.beats]),
            )
        else:
            probabilities = np.zeros((0, len(classes)), np.float32)
        return self.complete(
            ingested.beats, probabilities, classes, model_version, now_ms, ingested.ticks
        )

    # -- devices -----------------------------------------------------------------------------

    def _leads(self, chunk: EcgChunk) -> list[int]:
        try:
            return choose_leads(chunk.lead_names, self.preprocess)
        except ValueError:
            raise WireFormatError(
                RejectReason.INVALID_VALUE,
                f"no usable lead among {list(chunk.lead_names)} "
                f"(accepted: {list(self.preprocess.lead_preference)})",
            ) from None

    def _device(self, chunk: EcgChunk, partition: int) -> _Device:
        device = self._devices.get(chunk.device_id)
        return device if device is not None else self._restart(chunk, partition)

    def _restart(self, chunk: EcgChunk, partition: int) -> _Device:
        previous = self._devices.get(chunk.device_id)
        device = _Device(
            partition=partition,
            patient_id=chunk.patient_id,
            fs=chunk.fs,
            lead=chunk.lead_names[choose_leads(chunk.lead_names, self.preprocess)[0]],
            stream=PatientStream(
                chunk.fs, self.preprocess, start_sample=chunk.first_sample, rhythm=True
            ),
            monitor=previous.monitor
            if previous is not None
            else RhythmMonitor(chunk.device_id, self.alarm_config, fs=chunk.fs),
            next_sample=chunk.first_sample,
            time_origin=chunk.start_time - chunk.first_sample / chunk.fs,
        )
        self._devices[chunk.device_id] = device
        return device
