"""The device simulator (`ecgstream replay`): WFDB records published as bedside devices do.

The demo, the benchmarks and infravalidation all play their devices through it. One chunk per
device per interval, keyed by device id (a device always lands on one partition), at `speed`
times real time (0 = as fast as possible). Patient i plays record i mod len(records) under its
own device id and pseudonym; patients sharing a record start at different offsets.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from ecgstream.io.device_keys import device_signer
from ecgstream.io.kafka import KafkaRole, make_producer
from ecgstream.records import EcgRecord, load_record
from ecgstream.settings import Settings
from ecgstream.wire import EcgChunk, encode_chunk, encode_fields, make_chunk

PATIENT_OFFSET_S = 61.0  # patients that share a record start this far apart


@dataclass(frozen=True)
class ReplayDevice:
    device_id: str
    patient_id: str
    record: str
    start_sample: int


@dataclass
class ReplayStats:
    devices: list[ReplayDevice] = field(default_factory=list)
    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0
    last_sample: dict[str, int] = field(default_factory=dict)  # device -> end sample sent


def pseudonym(device_id: str) -> str:
    """A stable pseudonymous patient id: nothing that names a person or a record."""
    return "pt-" + hashlib.sha256(f"ecgstream-demo:{device_id}".encode()).hexdigest()[:12]


def plan_devices(
    records: Sequence[str], patients: int, record_seconds: dict[str, float], prefix: str = "dev"
) -> list[ReplayDevice]:
    devices = []
    for i in range(patients):
        name = records[i % len(records)]
        lap = i // len(records)
        offset = (lap * PATIENT_OFFSET_S) % max(1.0, record_seconds[name] - 60.0)
        device_id = f"{prefix}-{i:04d}"
        devices.append(ReplayDevice(device_id, pseudonym(device_id), name, int(offset * 360)))
    return devices


def device_chunk(
    device: ReplayDevice,
    record: EcgRecord,
    tick: int,
    size: int,
    started: float,
    session: str | None = None,
) -> EcgChunk:
    """The chunk a device sends at `tick` (chunks of `size` samples from its start); version 1
    of the wire format when `session` is None."""
    begin = device.start_sample + tick * size
    return make_chunk(
        device_id=device.device_id,
        patient_id=device.patient_id,
        seq=tick,
        first_sample=begin,
        start_time=started + (begin - device.start_sample) / record.fs,
        fs=record.fs,
        lead_names=record.lead_names,
        adc_gain=record.adc_gain,
        adc_baseline=record.adc_baseline,
        samples=record.digital[:, begin : begin + size],
        session=session,
    )


REPLAY_SESSION = "boot-1"  # every replayed device's session unless told otherwise


SPREAD_GROUPS = 10


async def replay(
    settings: Settings,
    data_dir: Path,
    records: Sequence[str],
    patients: int,
    speed: float,
    *,
    chunk_s: float = 1.0,
    duration_s: float | None = None,
    prefix: str = "dev",
    topic: str | None = None,
    on_tick: Callable[[int, ReplayStats], None] = lambda tick, stats: None,
    session: str | None = None,
) -> ReplayStats:
    """Publish the devices' chunks (wire version 2, signed with their keys where the fleet
    secret is at hand). All devices are in `session` (REPLAY_SESSION by default): replaying the
    same devices again is a re-delivery, with another `session` a reboot."""
    loaded: dict[str, EcgRecord] = {name: load_record(data_dir, name) for name in set(records)}
    seconds = {name: r.n_samples / r.fs for name, r in loaded.items()}
    stats = ReplayStats(devices=plan_devices(records, patients, seconds, prefix))
    started = time.time()
    session = session or REPLAY_SESSION
    signer = device_signer(settings)
    # a bedside device may write only ecg.samples; replays into staging are release tooling's
    role: KafkaRole = "device" if topic in (None, settings.topics.samples) else "admin"
    producer = make_producer(settings, role, linger_ms=20, max_batch_size=256 * 1024)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # a broker that does not answer: no unclosed client left behind
        raise
    try:
        n_ticks = math.inf if duration_s is None else math.ceil(duration_s / chunk_s)
        tick = 0
        # at real-time speeds the devices are spread over each tick, as unsynchronised bedside
        # devices are; at full speed (0) every tick is sent as one burst
        groups = max(1, min(SPREAD_GROUPS, len(stats.devices))) if speed > 0 else 1
        while tick < n_ticks:
            futures = []
            for group in range(groups):
                for device in stats.devices[group::groups]:
                    record = loaded[device.record]
                    size = round(chunk_s * record.fs)
                    begin = device.start_sample + tick * size
                    if begin >= record.n_samples:
                        continue
                    chunk = device_chunk(device, record, tick, size, started, session)
                    payload = encode_chunk(chunk)
                    futures.append(
                        await producer.send(
                            topic or settings.topics.samples,
                            payload,
                            key=device.device_id.encode(),
                            headers=signer.headers(device.device_id, payload) if signer else None,
                        )
                    )
                    stats.chunks += 1
                    stats.bytes += len(payload)
                    stats.last_sample[device.device_id] = chunk.end_sample
                if speed > 0:
                    due = started + (tick + (group + 1) / groups) * chunk_s / speed
                    await asyncio.sleep(max(0.0, due - time.time()))
            if not futures:
                break  # every record ended
            await asyncio.gather(*futures)
            tick += 1
            on_tick(tick, stats)
    finally:
        await producer.stop()
    stats.seconds = time.time() - started
    return stats


def malformed_messages() -> list[tuple[str, bytes]]:
    """One message for each way the wire-format validator refuses input (for demos and tests)."""
    good: dict[str, Any] = dict(
        device_id="dev-bad",
        patient_id="pt-bad",
        seq=0,
        first_sample=0,
        start_time=time.time(),
        fs=360.0,
        lead_names=("MLII",),
        adc_gain=(200.0,),
        adc_baseline=(1024,),
        samples=np.zeros((1, 360), dtype=np.int16),
    )
    base = msgpack.unpackb(encode_fields(**good), raw=False)

    def packed(**changes: object) -> bytes:
        raw = {**base, **changes}
        return msgpack.packb({k: v for k, v in raw.items() if v is not None}, use_bin_type=True)

    return [
        ("not_msgpack", b"\xc1\xc1 not msgpack"),
        ("not_a_map", msgpack.packb([1, 2, 3])),
        ("unsupported_version", packed(v=99)),
        ("missing_field", packed(fs=None)),
        ("unknown_field", packed(colour="red")),
        ("wrong_type", packed(fs="fast")),
        ("non_finite", packed(fs=float("nan"))),
        ("length_mismatch", packed(gain=[200.0, 200.0])),
        ("fs_out_of_range", packed(fs=5.0)),
        ("oversize", b"\x00" * (1024 * 1024 + 1)),
        ("invalid_value", packed(device="bad device id!")),
    ]
