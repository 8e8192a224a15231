"""The results the platform publishes, and their Kafka message format: one definition for the
stream, the REST API's neighbours and the edge runner (which imports nothing heavier than this).

Every message carries its idempotency key (`beat_id` = device:session:sample, `alarm_id`), so a
subscriber can drop a redelivered duplicate and PostgreSQL drops it itself. Results made outside
a device session (`evaluate`, the REST API, the edge runner) have session "" and the shorter
`beat_id` device:sample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ecgstream.alarms import Alarm

# the Kafka record header an edge runner puts on what it forwards (the edge ingest stores those)
EDGE_ORIGIN_HEADER = ("origin", b"edge")


@dataclass(frozen=True)
class BeatResult:
    device_id: str
    patient_id: str
    sample: int
    time_s: float
    label: str
    probabilities: tuple[float, ...]
    model_version: str
    latency_ms: float
    rr_prev_s: float | None
    signal_fault: str | None = None  # an inhibiting sensor fault: the beat is not analysable
    session: str = ""  # the device's boot session (wire.py); "" outside the stream

    @property
    def beat_id(self) -> str:
        if self.session:
            return f"{self.device_id}:{self.session}:{self.sample}"
        return f"{self.device_id}:{self.sample}"


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm raised, or (with `ended_sample`) the end of the AF/VF episode it opened."""

    alarm: Alarm
    patient_id: str
    model_version: str
    ended_sample: int | None = None
    ended_time: float | None = None  # unix time of the end

    @property
    def is_end(self) -> bool:
        return self.ended_sample is not None


def beat_message(beat: BeatResult, classes: Sequence[str]) -> bytes:
    return json.dumps(
        {
            "beat_id": beat.beat_id,
            "device": beat.device_id,
            "session": beat.session,
            "patient": beat.patient_id,
            "sample": beat.sample,
            "time": round(beat.time_s, 4),
            "label": beat.label,
            "probabilities": dict(zip(classes, beat.probabilities, strict=True)),
            "model_version": beat.model_version,
            "latency_ms": round(beat.latency_ms, 1),
            "rr_prev_s": None if beat.rr_prev_s is None else round(beat.rr_prev_s, 4),
            "analysable": beat.signal_fault is None,
            "signal_fault": beat.signal_fault,
        },
        separators=(",", ":"),
    ).encode()


def alarm_message(event: AlarmEvent) -> bytes:
    alarm = event.alarm
    return json.dumps(
        {
            "alarm_id": alarm.alarm_id,
            "device": alarm.device_id,
            "patient": event.patient_id,
            "kind": alarm.kind,
            "category": alarm.category,
            "severity": alarm.severity,
            "start_sample": alarm.start_sample,
            "start_time": round(alarm.start_time, 4),
            "evidence": alarm.evidence,
            "fault": alarm.evidence.get("fault") if alarm.category == "technical" else None,
            "model_version": event.model_version,
            # the same alarm id twice: "raised", then (AF, VF) "ended" with the episode's end
            "event": "ended" if event.is_end else "raised",
            "end_sample": event.ended_sample,
            "end_time": None if event.ended_time is None else round(event.ended_time, 4),
        },
        separators=(",", ":"),
    ).encode()


def beat_from_message(payload: bytes) -> BeatResult:
    """A beat back from its `ecg.beats` message (the edge ingest stores edge beats so).
    Raises ValueError, KeyError or TypeError on a message not in this format."""
    m = json.loads(payload)
    return BeatResult(
        device_id=str(m["device"]),
        patient_id=str(m["patient"]),
        sample=int(m["sample"]),
        time_s=float(m["time"]),
        label=str(m["label"]),
        probabilities=tuple(float(p) for p in m["probabilities"].values()),
        model_version=str(m["model_version"]),
        latency_ms=float(m["latency_ms"]),
        rr_prev_s=None if m["rr_prev_s"] is None else float(m["rr_prev_s"]),
        signal_fault=m.get("signal_fault"),
        session=str(m.get("session") or ""),
    )


def alarm_from_message(payload: bytes) -> AlarmEvent:
    """An alarm (or an episode's end) back from its `ecg.alerts` message."""
    m = json.loads(payload)
    alarm = Alarm(
        alarm_id=str(m["alarm_id"]),
        device_id=str(m["device"]),
        kind=str(m["kind"]),
        severity=str(m["severity"]),
        start_sample=int(m["start_sample"]),
        start_time=float(m["start_time"]),
        evidence=dict(m["evidence"]),
        category=str(m["category"]),
    )
    ended = m.get("event") == "ended"
    return AlarmEvent(
        alarm,
        str(m["patient"]),
        str(m["model_version"]),
        ended_sample=int(m["end_sample"]) if ended else None,
        ended_time=float(m["end_time"]) if ended and m.get("end_time") is not None else None,
    )
