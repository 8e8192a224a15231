"""What a consumer does with a batch of Kafka messages, without the I/O.

decode + validate -> per-device stream (filter, detector, beat features) -> [inference, done by
the caller] -> join -> rhythm alarms. Kept free of Kafka, Ray and asyncpg so the delivery logic
around it stays thin and this part is tested directly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ecgstream.alarms import Alarm, AlarmConfig, ClassifiedBeat, RhythmMonitor
from ecgstream.class_join import alarm_events, read_classes, rr_interval
from ecgstream.errors import RejectReason, WireFormatError
from ecgstream.identity import DeviceVerifier
from ecgstream.messages import AlarmEvent, BeatResult
from ecgstream.monitoring.signal_quality import DeviceQuality, QualityConfig, mark_monitor
from ecgstream.rhythm.ticks import RhythmTick
from ecgstream.signal.chunk_stats import WindowStats, chunk_stats
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
    signature: bytes | None = None  # the `ecgstream-sig` header (ecgstream/identity.py)


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
    signal_fault: str | None = None  # the signal could not be analysed here (see quality)
    second_lead_qrs: float = 1.0  # BeatWindow.second_lead_qrs, for the ventricular-run rule
    session: str = ""  # the device's boot session (wire.py)


@dataclass(frozen=True)
class PendingAlarm:
    """A technical alarm (sensor fault) raised by a chunk, written with the batch's beats."""

    alarm: Alarm
    patient_id: str


@dataclass(frozen=True)
class PendingTick:
    """A tick of a device's rhythm clock (silence, VF), judged after the batch's beats."""

    device_id: str
    patient_id: str
    tick: RhythmTick
    time_s: float  # the device's clock at the tick (unix seconds)
    replay: bool
    session: str = ""


@dataclass
class _Device:
    partition: int
    session: str
    patient_id: str
    fs: float
    lead: str
    stream: PatientStream
    monitor: RhythmMonitor
    quality: DeviceQuality
    next_sample: int  # first_sample expected of the next chunk
    time_origin: float  # unix time of device sample 0
    last_beat: int | None = None


def window_stats(
    chunk: EcgChunk, lead_index: int, x_mv: np.ndarray, published_ms: int
) -> WindowStats:
    return chunk_stats(
        chunk.device_id,
        chunk.first_sample,
        chunk.fs,
        chunk.lead_names[lead_index],
        x_mv,
        published_ms,
        chunk.start_time,
        chunk.patient_id,
    )


@dataclass
class Ingested:
    beats: list[PendingBeat] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    windows: list[WindowStats] = field(default_factory=list)
    ticks: list[PendingTick] = field(default_factory=list)
    technical: list[PendingAlarm] = field(default_factory=list)
    chunks: int = 0
    duplicates: int = 0
    sessions: int = 0  # devices that started a new boot session in this batch


ENDED_SESSIONS_KEPT = 4096  # ended sessions remembered (their late duplicates are recognised)


class StreamProcessor:
    """Per-device state for the devices of the partitions one consumer owns.

    A device has one current boot session; a chunk of another session starts a new one (a
    reboot: the counters start again), and the ended session is remembered so that its in-flight
    beats are still judged by its own monitor and its re-delivered chunks still count as
    duplicates. With a `verifier`, a chunk must carry the signature of the device it names."""

    def __init__(
        self,
        preprocess: PreprocessConfig,
        alarm_config: AlarmConfig | None = None,
        quality_config: QualityConfig | None = None,
        verifier: DeviceVerifier | None = None,
    ) -> None:
        self.preprocess = preprocess
        self.alarm_config = alarm_config or AlarmConfig()
        self.quality_config = quality_config or QualityConfig()
        self.verifier = verifier
        self._devices: dict[str, _Device] = {}
        self._ended: OrderedDict[tuple[str, str], _Device] = OrderedDict()
        self.inhibited = 0  # arrhythmia alarms of live (not replayed) input not raised

    @property
    def devices(self) -> int:
        return len(self._devices)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the state of devices on partitions this consumer no longer owns."""
        for name in [n for n, d in self._devices.items() if d.partition in partitions]:
            del self._devices[name]
        for key in [k for k, d in self._ended.items() if d.partition in partitions]:
            del self._ended[key]

    def ingest(self, messages: Sequence[InputMessage]) -> Ingested:
        out = Ingested()
        for message in messages:
            try:
                chunk = decode_chunk(message.value)
                if self.verifier is not None:
                    self.verifier.verify(chunk.device_id, message.value, message.signature)
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
            device = self._device(chunk, message.partition, out)
            if device is None or chunk.first_sample < device.next_sample:
                out.duplicates += 1  # already seen (a producer retry or a replay overlap)
                continue
            if chunk.first_sample > device.next_sample or chunk.fs != device.fs:
                self._reset_signal(device, chunk, message.partition)  # a gap
            out.chunks += 1
            device.next_sample = chunk.end_sample
            device.time_origin = chunk.start_time - chunk.first_sample / chunk.fs
            x = chunk.millivolts()[lead_indices]
            # the chunk's signal quality is judged before its beats and ticks, which read it
            judged, raised = device.quality.judge(
                window_stats(chunk, lead_indices[0], x[0], message.timestamp_ms)
            )
            mark_monitor(device.monitor, [judged])
            if not message.replay:
                out.windows.append(judged)
                out.technical += [PendingAlarm(a, chunk.patient_id) for a in raised]
            for beat in device.stream.push(x):
                rr_prev = rr_interval(device.last_beat, beat.device_sample, device.fs)
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
                        signal_fault=device.monitor.fault_at(beat.device_sample),
                        second_lead_qrs=beat.features.second_lead_qrs,
                        session=device.session,
                    )
                )
            out.ticks += [
                PendingTick(
                    chunk.device_id,
                    chunk.patient_id,
                    tick,
                    device.time_origin + tick.sample / device.fs,
                    message.replay,
                    device.session,
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
        technical: Sequence[PendingAlarm] = (),
    ) -> tuple[list[BeatResult], list[AlarmEvent]]:
        """The batch's technical alarms, then the clock's rules (silence, VF) on its ticks, then
        classes joined to beats and the beat rules; what is replayed updates state only."""
        results: list[BeatResult] = []
        alarms = [AlarmEvent(t.alarm, t.patient_id, model_version) for t in technical]
        labels, rounded = read_classes(probabilities, classes)
        for pending in ticks:
            device = self._session(pending.device_id, pending.session)
            if device is not None:
                self._rules(
                    device,
                    partial(device.monitor.observe, pending.tick, pending.time_s),
                    pending.replay,
                    pending.patient_id,
                    model_version,
                    alarms,
                )
        for beat, label, proba in zip(beats, labels, rounded, strict=True):
            device = self._session(beat.device_id, beat.session)
            if device is not None:
                classified = ClassifiedBeat(
                    beat.sample, beat.time_s, label, beat.rr_prev_s, beat.second_lead_qrs
                )
                self._rules(
                    device,
                    partial(device.monitor.add, classified),
                    beat.replay,
                    beat.patient_id,
                    model_version,
                    alarms,
                )
            if beat.replay:
                continue
            results.append(
                BeatResult(
                    device_id=beat.device_id,
                    patient_id=beat.patient_id,
                    sample=beat.sample,
                    time_s=beat.time_s,
                    label=label,
                    probabilities=proba,
                    model_version=model_version,
                    latency_ms=max(0.0, now_ms - beat.published_ms),
                    rr_prev_s=beat.rr_prev_s,
                    signal_fault=beat.signal_fault,
                    session=beat.session,
                )
            )
        return results, alarms

    def _rules(
        self,
        device: _Device,
        rule: Callable[[], list[Alarm]],
        replay: bool,
        patient_id: str,
        model_version: str,
        out: list[AlarmEvent],
    ) -> None:
        """Run one monitor call; add what it raised, and the AF/VF episodes it ended, to `out`
        (nothing when replayed: the first owner emitted it)."""
        before = device.monitor.inhibited
        events = alarm_events(device.monitor, rule(), patient_id, model_version, device.time_origin)
        if replay:
            return
        self.inhibited += device.monitor.inhibited - before
        out += events

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
            ingested.beats,
            probabilities,
            classes,
            model_version,
            now_ms,
            ingested.ticks,
            ingested.technical,
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

    def _session(self, device_id: str, session: str) -> _Device | None:
        device = self._devices.get(device_id)
        if device is not None and device.session == session:
            return device
        return self._ended.get((device_id, session))

    def _device(self, chunk: EcgChunk, partition: int, out: Ingested) -> _Device | None:
        """The chunk's device state in the chunk's session: the current one, a new session
        (the old one is remembered as ended), or None for a late chunk of an ended session that
        was already seen."""
        device = self._devices.get(chunk.device_id)
        if device is None:
            return self._restart(chunk, partition, chunk.session)
        session = chunk.session
        if chunk.wire_version == 1 and chunk.first_sample == device.next_sample:
            session = device.session  # a contiguous v1 chunk continues, whatever its clock says
        if session == device.session:
            return device
        ended = self._ended.get((chunk.device_id, session))
        if ended is not None:
            return ended if chunk.first_sample >= ended.next_sample else None
        self._ended[(chunk.device_id, device.session)] = device
        while len(self._ended) > ENDED_SESSIONS_KEPT:
            self._ended.popitem(last=False)
        out.sessions += 1
        del self._devices[chunk.device_id]
        return self._restart(chunk, partition, session)

    def _restart(self, chunk: EcgChunk, partition: int, session: str) -> _Device:
        """A new session's state from this chunk on (the device's current session)."""
        device = _Device(
            session=session,
            monitor=RhythmMonitor(chunk.device_id, self.alarm_config, fs=chunk.fs, session=session),
            quality=DeviceQuality(chunk.device_id, self.quality_config, session=session),
            **self._signal_state(chunk, partition),
        )
        self._devices[chunk.device_id] = device
        return device

    def _reset_signal(self, device: _Device, chunk: EcgChunk, partition: int) -> None:
        """Fresh signal state from this chunk on, after a gap: the filters' and the detector's
        history is useless. The session's rhythm monitor and quality judge carry over (a gap is
        itself judged against the chunk before it)."""
        for name, value in self._signal_state(chunk, partition).items():
            setattr(device, name, value)

    def _signal_state(self, chunk: EcgChunk, partition: int) -> dict[str, Any]:
        return {
            "partition": partition,
            "patient_id": chunk.patient_id,
            "fs": chunk.fs,
            "lead": chunk.lead_names[choose_leads(chunk.lead_names, self.preprocess)[0]],
            "stream": PatientStream(
                chunk.fs, self.preprocess, start_sample=chunk.first_sample, rhythm=True
            ),
            "next_sample": chunk.first_sample,
            "time_origin": chunk.start_time - chunk.first_sample / chunk.fs,
            "last_beat": None,
        }
