"""`ecgstream bench bandwidth`: bytes per patient per second on every link, measured by encoding
real records exactly as each deployment sends them.

- streaming: `ecg.samples` chunks in (the wire format, 1-second chunks), beat and alarm messages
  out (`ecgstream.messages`, value + key);
- REST: a JSON segment request (millivolts to 3 decimals, 5 uV, below the ADC's resolution) and
  its response, per segment;
- edge: only results leave the device (the same beat and alarm messages), no signal.

The baseline of the same run is the raw signal itself: int16 samples, no framing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ecgstream.artifact import load_artifact
from ecgstream.io.device_simulator import ReplayDevice, device_chunk, pseudonym
from ecgstream.messages import alarm_message, beat_message
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import load_record
from ecgstream.segment import classify_segment
from ecgstream.signal.units import adc_to_millivolts
from ecgstream.wire import encode_chunk


def bench_bandwidth(
    data_dir: Path, records: Sequence[str], seconds: float = 300.0, segment_s: float = 10.0
) -> dict[str, Any]:
    model = load_artifact()
    processor = StreamProcessor(model.preprocess)
    totals = {"seconds": 0.0, "raw": 0, "in": 0, "out": 0, "beats": 0, "alarms": 0}
    rest_request, rest_response = [], []
    for index, name in enumerate(tqdm(records, desc="records", unit="record")):
        record = load_record(data_dir, name)
        device_id = f"bw-{index:04d}"
        device = ReplayDevice(device_id, pseudonym(device_id), name, 0)
        size = round(record.fs)  # 1-second chunks, as devices send them
        ticks = min(math.ceil(seconds), record.n_samples // size)
        messages = []
        for tick in range(ticks):
            payload = encode_chunk(device_chunk(device, record, tick, size, 0.0))
            totals["in"] += len(payload) + len(device_id)
            messages.append(InputMessage(0, tick, None, payload, 0))
        totals["seconds"] += ticks
        totals["raw"] += ticks * size * len(record.lead_names) * 2
        results, events = processor.complete_with(
            processor.ingest(messages), model.predict_proba, model.classes, model.version
        )
        for beat in results:
            totals["out"] += len(beat_message(beat, model.classes)) + len(device_id)
        for event in events:
            totals["out"] += len(alarm_message(event)) + len(device_id)
        totals["beats"] += len(results)
        totals["alarms"] += len(events)
        request, response = _rest_segment(model, record, segment_s)
        rest_request.append(request)
        rest_response.append(response)
    patient_s = totals["seconds"]
    request_bytes = float(np.mean(rest_request))
    response_bytes = float(np.mean(rest_response))
    kafka_in = totals["in"] / patient_s
    return {
        "records": list(records),
        "patient_seconds": patient_s,
        "beats_per_patient_s": round(totals["beats"] / patient_s, 3),
        "alarms_per_patient_hour": round(totals["alarms"] / patient_s * 3600, 2),
        "raw_signal_bytes_per_patient_s": round(totals["raw"] / patient_s, 1),
        "kafka_in_bytes_per_patient_s": round(kafka_in, 1),
        "kafka_out_bytes_per_patient_s": round(totals["out"] / patient_s, 1),
        "wire_vs_raw_signal": round(kafka_in / (totals["raw"] / patient_s), 3),
        "rest_segment_s": segment_s,
        "rest_request_bytes_per_segment": round(request_bytes),
        "rest_response_bytes_per_segment": round(response_bytes),
        "rest_in_bytes_per_patient_s": round(request_bytes / segment_s, 1),
        "edge_uplink_bytes_per_patient_s": round(totals["out"] / patient_s, 1),
        "definition": "payload + key bytes of each message (Kafka's batch framing and TLS add a "
        "few percent); REST bodies as JSON, samples in mV to 3 decimals",
    }


def _rest_segment(model: Any, record: Any, segment_s: float) -> tuple[int, int]:
    """Bytes of one segment's JSON request and of its answer."""
    n = round(segment_s * record.fs)
    head = record.head(n)
    millivolts = adc_to_millivolts(head.digital, head.adc_gain, head.adc_baseline)
    body = json.dumps(
        {
            "fs": record.fs,
            "leads": list(record.lead_names),
            "samples": np.round(millivolts, 3).tolist(),
        },
        separators=(",", ":"),
    )
    answer = classify_segment(model, millivolts.astype(np.float32), record.fs, record.lead_names)
    return len(body), len(json.dumps(answer, separators=(",", ":")))
