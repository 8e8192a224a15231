"""What a replay must produce: the same chunks through the same processor, in this process,
with the model run locally. Tests and `bench pipeline` compare the pipeline's outputs with it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecgstream.artifact import load_artifact
from ecgstream.io.device_simulator import REPLAY_SESSION, device_chunk, plan_devices
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import load_record
from ecgstream.wire import encode_chunk


@dataclass(frozen=True)
class ExpectedOutputs:
    beats: dict[tuple[str, int], str]  # (device, sample) -> label
    alarms: set[str]


def offline_reference(
    data_dir: Path,
    records: Sequence[str],
    patients: int,
    duration_s: float,
    prefix: str,
    chunk_s: float = 1.0,
    session: str = REPLAY_SESSION,
) -> ExpectedOutputs:
    model = load_artifact()
    loaded = {name: load_record(data_dir, name) for name in set(records)}
    seconds = {name: r.n_samples / r.fs for name, r in loaded.items()}
    processor = StreamProcessor(model.preprocess)
    beats: dict[tuple[str, int], str] = {}
    alarms: set[str] = set()
    for device in plan_devices(records, patients, seconds, prefix):
        record = loaded[device.record]
        size = round(chunk_s * record.fs)
        messages = []
        for tick in range(math.ceil(duration_s / chunk_s)):  # as many ticks as replay sends
            if device.start_sample + tick * size >= record.n_samples:
                break
            chunk = device_chunk(device, record, tick, size, 0.0, session)
            messages.append(InputMessage(0, tick, None, encode_chunk(chunk), 0))
        results, events = processor.complete_with(
            processor.ingest(messages), model.predict_proba, model.classes, model.version
        )
        beats.update({(r.device_id, r.sample): r.label for r in results})
        alarms.update(e.alarm.alarm_id for e in events)
    return ExpectedOutputs(beats, alarms)
