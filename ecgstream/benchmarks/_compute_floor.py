"""The compute floor of `bench pipeline`: what the pipeline's pure work costs with no I/O.

The same workload the throughput runs publish, encoded in memory, then decoded, verified,
preprocessed (filters, detector, beat features, signal quality, rhythm ticks), classified by
the model (one thread, as one Serve replica runs it) and joined with the alarm rules, in one
tight loop of this process. Times the cores the pipeline may use, that is the most beats/s the
machine could give for this workload if delivery cost nothing.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch

from ecgstream.artifact import load_artifact
from ecgstream.identity import DeviceSigner, DeviceVerifier
from ecgstream.io.device_simulator import REPLAY_SESSION, device_chunk, plan_devices
from ecgstream.processing import InputMessage, StreamProcessor
from ecgstream.records import load_record
from ecgstream.settings import Settings
from ecgstream.wire import encode_chunk

FORWARD_BATCH = 1000  # messages per batch, as a consumer fetches them


def pipeline_cores(settings: Settings) -> int:
    """The CPUs the pipeline's Ray cluster has: the local head's, else this machine's."""
    if settings.ray.address is None:
        return settings.local.ray_num_cpus
    return os.cpu_count() or 1


def compute_floor(
    settings: Settings, records: tuple[str, ...], patients: int, duration_s: float
) -> dict[str, Any]:
    model = load_artifact()
    loaded = {name: load_record(settings.records_dir, name) for name in set(records)}
    seconds = {name: r.n_samples / r.fs for name, r in loaded.items()}
    secret = b"compute-floor-fleet-secret"
    signer = DeviceSigner(secret)
    messages: list[InputMessage] = []
    devices = plan_devices(list(records), patients, seconds, "floor")
    for tick in range(math.ceil(duration_s)):  # device-interleaved, as the topic holds them
        for device in devices:
            record = loaded[device.record]
            size = round(record.fs)
            if device.start_sample + tick * size >= record.n_samples:
                continue
            payload = encode_chunk(device_chunk(device, record, tick, size, 0.0, REPLAY_SESSION))
            signature = signer.headers(device.device_id, payload)[0][1]
            messages.append(InputMessage(0, len(messages), None, payload, 0, signature=signature))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        warm = StreamProcessor(model.preprocess)  # first calls (torch, filters) are not timed
        warm.complete_with(
            warm.ingest(messages[: len(devices) * 3]), model.predict_proba, model.classes, ""
        )
        processor = StreamProcessor(model.preprocess, verifier=DeviceVerifier(secret))
        beats = 0
        started = time.perf_counter()
        for begin in range(0, len(messages), FORWARD_BATCH):
            results, _ = processor.complete_with(
                processor.ingest(messages[begin : begin + FORWARD_BATCH]),
                model.predict_proba,
                model.classes,
                model.version,
            )
            beats += len(results)
        elapsed = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    per_core = beats / elapsed
    cores = pipeline_cores(settings)
    return {
        "beats": beats,
        "seconds": round(elapsed, 3),
        "per_core_beats_per_s": round(per_core, 1),
        "cores": cores,
        "beats_per_s": round(per_core * cores, 1),
    }
