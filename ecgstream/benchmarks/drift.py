"""`ecgstream bench drift`: does the monitor catch each injected fault, and how fast; does it
stay quiet on clean data?

A fleet of devices plays the DS1 records (one each) through the same code the pipeline runs
(wire encoding, StreamProcessor, the model, FleetMonitor), offline and at full speed. In each
fault scenario one device's signal is altered from `inject_s` on (the class-mix scenario
instead replaces the whole fleet by patients with many ventricular beats); the delay is stream
time from the injection to the first alarm or drift flag it caused. The clean replay plays
every record twice (the second time under new device ids) and counts every alarm or flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from ecgstream.artifact import ModelArtifact, load_artifact
from ecgstream.monitoring.drift import summary_features
from ecgstream.monitoring.fleet import BeatSummary, FleetMonitor, WindowSummary
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import EcgRecord, load_record
from ecgstream.splits import DS1
from ecgstream.wire import encode_chunk, make_chunk

SENSOR_FAULTS = (
    "noise",
    "gain_half",
    "gain_double",
    "baseline_wander",
    "inverted_lead",
    "swapped_lead",
    "wrong_fs",
    "flat_line",
    "lead_off",
)
FLEET_FAULTS = ("class_mix",)
# the DS1 patients with the most ventricular beats (a quarter to a third of their beats)
HIGH_V_RECORDS = ("208", "119", "106")
T0 = 1_700_000_000.0  # the fleet's clock at stream time 0 (any fixed value)


@dataclass(frozen=True)
class Device:
    device_id: str
    record: EcgRecord
    fault: str | None = None
    inject_sample: int = 0
    joins_s: float = 0.0  # stream time it starts sending
    leaves_s: float = math.inf
    start_s: float = 0.0  # where in its record it starts


def _altered(record: EcgRecord, fault: str, start: int, rng: np.random.Generator) -> np.ndarray:
    """The record's ADC samples with `fault` applied from `start` on (wrong_fs aside)."""
    digital = record.digital.astype(np.float64)
    gain = np.asarray(record.adc_gain)[:, None]
    base = np.asarray(record.adc_baseline, dtype=float)[:, None]
    part = digital[:, start:]
    t = np.arange(part.shape[1]) / record.fs
    if fault == "noise":  # muscle-like broadband noise, 0.1 mV sd
        part += rng.normal(0.0, 0.1, part.shape) * gain
    elif fault == "gain_half":
        part[:] = base + (part - base) * 0.5
    elif fault == "gain_double":
        part[:] = base + (part - base) * 2.0
    elif fault == "baseline_wander":  # breathing-like, 1 mV at 0.3 Hz
        part += np.sin(2 * np.pi * 0.3 * t)[None, :] * 1.0 * gain
    elif fault == "inverted_lead":
        part[:] = base - (part - base)
    elif fault == "swapped_lead" and part.shape[0] > 1:
        part[[0, 1]] = part[[1, 0]]
    elif fault == "flat_line":
        part[:] = base
    elif fault == "lead_off":  # electrodes off: the amplifier pinned at +5 mV
        part[:] = base + 5.0 * gain
    return np.clip(np.round(digital), -32768, 32767).astype(np.int16)


def device_chunks(
    device: Device, seconds: float, rng: np.random.Generator, origin: float = T0
) -> Iterator[tuple[int, bytes, int]]:
    """(tick, chunk bytes, samples) for each 1-second tick the device sends; the device's clock
    reads `origin` at tick 0."""
    record = device.record
    fs = record.fs
    size = round(fs)
    digital = record.digital
    if device.fault in SENSOR_FAULTS and device.fault != "wrong_fs":
        digital = _altered(record, device.fault, device.inject_sample, rng)
    first_tick = math.ceil(device.joins_s)
    last_tick = math.ceil(min(seconds, device.leaves_s))
    sample = round(device.start_s * fs)
    for tick in range(first_tick, last_tick):
        if device.fault == "wrong_fs" and sample >= device.inject_sample:
            # the device really samples at 250 Hz but still declares 360: 250 samples/s
            source = digital[:, sample : sample + size]
            samples = np.stack([resample_poly(row.astype(float), 25, 36) for row in source])
            samples = np.round(samples).astype(np.int16)
        else:
            samples = digital[:, sample : sample + size]
        if samples.shape[1] == 0:
            return
        n = samples.shape[1]
        chunk = make_chunk(
            device_id=device.device_id,
            patient_id=f"pt-{device.device_id}",
            seq=tick,
            first_sample=_first_sample(device, tick, fs),
            start_time=origin + tick,
            fs=fs,
            lead_names=record.lead_names,
            adc_gain=record.adc_gain,
            adc_baseline=record.adc_baseline,
            samples=samples,
        )
        yield tick, encode_chunk(chunk), n
        sample += size


def _first_sample(device: Device, tick: int, fs: float) -> int:
    # the device's own sample counter: under wrong_fs it counts the samples it really sends
    elapsed = tick - math.ceil(device.joins_s)
    if device.fault != "wrong_fs":
        return elapsed * round(fs)
    inject_tick = device.inject_sample // round(fs)
    if elapsed <= inject_tick:
        return elapsed * round(fs)
    return inject_tick * round(fs) + (elapsed - inject_tick) * 250


def run_fleet(
    devices: Sequence[Device],
    seconds: float,
    model: ModelArtifact,
    monitor: FleetMonitor,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """Play the fleet tick by tick through the pipeline's code; return every alarm and drift
    event with the stream time it was raised at."""
    rng = np.random.default_rng(seed)
    processor = StreamProcessor(model.preprocess)
    streams = {d.device_id: device_chunks(d, seconds, rng) for d in devices}
    pending = {d.device_id: next(streams[d.device_id], None) for d in devices}
    events: list[dict[str, Any]] = []
    offset = 0
    for tick in range(math.ceil(seconds)):
        messages = []
        for device_id, item in pending.items():
            while item is not None and item[0] == tick:
                messages.append(InputMessage(0, offset, device_id.encode(), item[1], 0))
                offset += 1
                item = next(streams[device_id], None)
            pending[device_id] = item
        if not messages:
            continue
        ingested = processor.ingest(messages)
        monitor.observe_windows(WindowSummary.of(ingested.windows))  # as consumers send it
        for alarm in (t.alarm for t in ingested.technical):  # judged in the stream path
            events.append(
                {
                    "at_s": tick + 1,
                    "device": alarm.device_id,
                    "kind": alarm.evidence["fault"],
                    "alarm_id": alarm.alarm_id,
                }
            )
        if not ingested.beats:
            continue
        windows = np.stack([b.window for b in ingested.beats])
        rr = np.stack([b.rr for b in ingested.beats])
        proba = model.predict_proba(windows, rr)
        results, _ = processor.complete(ingested.beats, proba, model.classes, model.version, 0)
        summary = BeatSummary(
            device_ids=[r.device_id for r in results],
            labels=[r.label for r in results],
            probabilities=proba,
            features=summary_features(windows, rr),
            rr_prev_s=np.array([np.nan if r.rr_prev_s is None else r.rr_prev_s for r in results]),
            stream_time=np.array([r.time_s for r in results]),
        )
        for change in monitor.observe_beats(summary):
            if change["raised"]:
                events.append(
                    {"at_s": tick + 1, "device": None, "kind": f"{change['drift']}_drift"}
                )
    return events


def _fleet(data_dir: Path, records: Sequence[str], prefix: str) -> list[Device]:
    return [Device(f"{prefix}-{name}", load_record(data_dir, name)) for name in records]


def fault_scenario(
    data_dir: Path,
    fault: str,
    model: ModelArtifact,
    records: Sequence[str],
    inject_s: float,
    after_s: float,
) -> dict[str, Any]:
    devices = _fleet(data_dir, records, f"f-{fault}")
    monitor = FleetMonitor(model.reference)
    seconds = inject_s + after_s
    if fault in SENSOR_FAULTS:
        victim = devices[0]
        devices[0] = Device(
            victim.device_id, victim.record, fault, int(inject_s * victim.record.fs)
        )
        events = run_fleet(devices, seconds, model, monitor)
        mine = [e for e in events if e["device"] == victim.device_id and e["at_s"] > inject_s]
    else:  # class mix: the whole fleet is replaced by patients with many V beats (a 22-patient
        # fleet's own V share wanders between 5 and 15 % from minute to minute)
        half = len(devices)
        devices = [Device(d.device_id, d.record, leaves_s=inject_s) for d in devices] + [
            *[
                Device(
                    f"f-mix-new-{i}",
                    load_record(data_dir, HIGH_V_RECORDS[i % len(HIGH_V_RECORDS)]),
                    joins_s=inject_s,
                    start_s=(i // len(HIGH_V_RECORDS)) * 300.0,
                )
                for i in range(half)
            ],
        ]
        events = run_fleet(devices, seconds, model, monitor)
        mine = [e for e in events if e["kind"] == "prediction_drift" and e["at_s"] > inject_s]
    before = [e for e in events if e["at_s"] <= inject_s]
    first = min(mine, key=lambda e: e["at_s"]) if mine else None
    return {
        "detected": first is not None,
        "delay_s": None if first is None else round(first["at_s"] - inject_s, 1),
        "raised": sorted({e["kind"] for e in mine}),
        "false_alarms_before_injection": len(before),
        "other_events_after": sorted(
            {e["kind"] for e in events if e["at_s"] > inject_s and e not in mine}
        ),
    }


def clean_replay(
    data_dir: Path, model: ModelArtifact, records: Sequence[str], passes: int = 2
) -> dict[str, Any]:
    """Every record played `passes` times back to back (new device ids each pass)."""
    monitor = FleetMonitor(model.reference)
    loaded = {name: load_record(data_dir, name) for name in records}
    longest = max(r.n_samples / r.fs for r in loaded.values())
    devices = [
        Device(f"clean{p}-{name}", record, joins_s=p * longest, leaves_s=(p + 1) * longest)
        for p in range(passes)
        for name, record in loaded.items()
    ]
    events = run_fleet(devices, passes * longest, model, monitor)
    device_hours = sum(r.n_samples / r.fs for r in loaded.values()) * passes / 3600
    return {
        "events": events,
        "device_hours": device_hours,
        "stream_hours": passes * longest / 3600,
        "summary": monitor.summary(),
    }


def bench_drift(
    data_dir: Path,
    faults: Sequence[str] = SENSOR_FAULTS + FLEET_FAULTS,
    records: Sequence[str] = DS1,
    inject_s: float = 240.0,
    after_s: float = 120.0,
    clean_passes: int = 2,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    model = load_artifact()
    results = {}
    for fault in faults:
        on_step(f"fault: {fault}")
        results[fault] = fault_scenario(data_dir, fault, model, records, inject_s, after_s)
    on_step(f"clean replay: {len(records)} records x {clean_passes}")
    clean = clean_replay(data_dir, model, records, clean_passes)
    false_alarms = len(clean["events"])
    drift_flags = sum(1 for e in clean["events"] if e["kind"].endswith("_drift"))
    return {
        "faults": results,
        "clean_hours": round(clean["stream_hours"], 2),
        "clean_false_alarms_per_hour": round(false_alarms / clean["stream_hours"], 3),
        "details": {
            "clean_device_hours": round(clean["device_hours"], 1),
            "clean_false_alarms": clean["events"],
            "clean_false_alarms_per_device_hour": round(false_alarms / clean["device_hours"], 4),
            "clean_false_drift_alarms_per_hour": round(drift_flags / clean["stream_hours"], 3),
            "clean_false_technical_alarms_per_device_hour": round(
                (false_alarms - drift_flags) / clean["device_hours"], 4
            ),
            "clean_monitor_summary": clean["summary"],
            "fleet": list(records),
            "inject_s": inject_s,
            "definition": "one device altered from inject_s (class_mix: the whole fleet "
            "replaced by high-V patients); delay = stream seconds from the injection to the "
            "first alarm or drift flag it caused; clean: every record twice, any alarm or "
            "flag counts as false (technical alarms included); clean_hours is fleet stream "
            "time",
        },
    }
