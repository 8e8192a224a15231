"""Cutting a record into the chunks a bedside device would send."""

from __future__ import annotations

from collections.abc import Iterator

from ecgstream.records import EcgRecord
from ecgstream.wire import EcgChunk, make_chunk


def record_chunks(
    record: EcgRecord,
    *,
    device_id: str,
    patient_id: str,
    chunk_seconds: float = 1.0,
    start_time: float = 0.0,
    first_seq: int = 0,
    start_sample: int = 0,
    max_chunks: int | None = None,
) -> Iterator[EcgChunk]:
    """Chunks of `chunk_seconds` from `start_sample` on; the last chunk may be shorter."""
    size = max(1, round(chunk_seconds * record.fs))
    seq = first_seq
    for begin in range(start_sample, record.n_samples, size):
        if max_chunks is not None and seq - first_seq >= max_chunks:
            return
        yield make_chunk(
            device_id=device_id,
            patient_id=patient_id,
            seq=seq,
            first_sample=begin,
            start_time=start_time + begin / record.fs,
            fs=record.fs,
            lead_names=record.lead_names,
            adc_gain=record.adc_gain,
            adc_baseline=record.adc_baseline,
            samples=record.digital[:, begin : begin + size],
        )
        seq += 1
