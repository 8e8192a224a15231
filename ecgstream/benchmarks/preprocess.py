"""Speed measurements that compare against a baseline in the same run (ratios, not seconds)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecgstream.records import load_record
from ecgstream.stream import PatientStream, PreprocessConfig, choose_leads


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """Pin this process to a single CPU for the duration (restored afterwards)."""
    previous = os.sched_getaffinity(0)
    core = min(previous)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, previous)


def _best_of(repeats: int, run: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def bench_preprocess(
    data_dir: Path, records: Sequence[str], chunk_s: float = 1.0, repeats: int = 2
) -> dict[str, Any]:
    """ecgstream's streaming filter + detector + beat features vs wfdb's XQRS detector alone,
    on the same leads, one core, in one run."""
    from wfdb import processing

    config = PreprocessConfig()
    signals = []
    for name in records:
        record = load_record(data_dir, name)
        leads = choose_leads(record.lead_names, config)
        signals.append((record.fs, np.stack([record.lead(record.lead_names[i]) for i in leads])))
    seconds_of_signal = sum(x.shape[1] / fs for fs, x in signals)
    n_samples = sum(x.shape[1] for _, x in signals)  # per lead

    def ours(chunked: bool) -> Callable[[], int]:
        def run() -> int:
            beats = 0
            for fs, x in signals:
                stream = PatientStream(fs, config, rhythm=True)  # as the stream runs it
                step = max(1, round(chunk_s * fs)) if chunked else x.shape[1]
                for begin in range(0, x.shape[1], step):
                    beats += len(stream.push(x[:, begin : begin + step]))
                    stream.pop_ticks()
                beats += len(stream.flush())
                stream.pop_ticks()
            return beats

        return run

    def xqrs() -> None:
        for fs, x in signals:
            processing.xqrs_detect(sig=x[0], fs=fs, verbose=False)

    with one_core() as core:
        streaming = _best_of(repeats, ours(chunked=True))
        whole = _best_of(repeats, ours(chunked=False))
        baseline = _best_of(repeats, xqrs)
        n_beats = ours(chunked=True)()
    return {
        "ecgstream_x_realtime": round(seconds_of_signal / streaming, 1),
        "xqrs_x_realtime": round(seconds_of_signal / baseline, 1),
        "ecgstream_whole_record_x_realtime": round(seconds_of_signal / whole, 1),
        "speedup_vs_xqrs": round(baseline / streaming, 2),
        "ecgstream_samples_per_s": round(n_samples / streaming),
        "chunk_s": chunk_s,
        "records": list(records),
        "signal_seconds": round(seconds_of_signal, 1),
        "beats": n_beats,
        "core": core,
        "what": "ecgstream: resample + band-pass + QRS detection + beat windows and features + "
        "the rhythm clock (silence, VF measures), fed in chunks of chunk_s; "
        "xqrs: wfdb.processing.xqrs_detect on the whole lead "
        "(detection only, its best case)",
    }
