"""Where an edge runner's samples come from: a WFDB record played in real time, or text
(a file or stdin) with one sample per line and one millivolt value per lead.

A source yields (n_leads, n) float32 millivolt chunks. `replayable` sources (files, records)
restart from sample 0 after a restart of the runner; a live stream (stdin) continues from the
sample count the outbox remembers, so beat ids never repeat.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from ecgstream.edge.wfdb_reader import WfdbRecord, open_wfdb
from ecgstream.errors import ConfigurationError

log = logging.getLogger("ecgstream.edge")

_SEPARATOR = re.compile(r"[,;\s]+")


@dataclass
class SampleSource:
    fs: float
    lead_names: tuple[str, ...]
    replayable: bool
    rejected_lines: int = field(default=0)

    def chunks(self) -> AsyncIterator[np.ndarray]:
        raise NotImplementedError


@dataclass
class WfdbSource(SampleSource):
    """A record played at `speed` times real time (0: as fast as the runner goes)."""

    record: WfdbRecord | None = None
    speed: float = 1.0
    chunk_s: float = 1.0
    limit_s: float | None = None  # play only the first limit_s seconds

    @classmethod
    def open(
        cls, path: Path, speed: float = 1.0, chunk_s: float = 1.0, limit_s: float | None = None
    ) -> WfdbSource:
        record = open_wfdb(path)
        return cls(
            record.fs,
            record.lead_names,
            True,
            record=record,
            speed=speed,
            chunk_s=chunk_s,
            limit_s=limit_s,
        )

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        assert self.record is not None
        step = max(1, round(self.chunk_s * self.fs))
        started = time.monotonic()
        end = self.record.n_samples
        if self.limit_s is not None:
            end = min(end, round(self.limit_s * self.fs))
        for begin in range(0, end, step):
            if self.speed > 0:  # real time: chunk k is due at k * chunk_s / speed
                due = started + begin / self.fs / self.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)
            yield self.record.millivolts(begin, min(begin + step, end))


@dataclass
class TextSource(SampleSource):
    """Lines of `n_leads` numbers (millivolts) separated by commas, semicolons or spaces; `#`
    starts a comment. A malformed line is counted and skipped, never fatal."""

    stream: IO[str] | None = None
    chunk_samples: int = 360

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        assert self.stream is not None
        n_leads = len(self.lead_names)
        rows: list[list[float]] = []
        loop = asyncio.get_running_loop()
        number = 0
        while True:
            # a pipe delivers lines as the device produces them: read off the event loop
            line = await loop.run_in_executor(None, self.stream.readline)
            if not line:
                break
            number += 1
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                values = [float(v) for v in _SEPARATOR.split(text)]
            except ValueError:
                values = []
            if len(values) != n_leads or not all(np.isfinite(values)):
                self.rejected_lines += 1
                if self.rejected_lines <= 10:
                    log.warning("line %d: expected %d numbers, skipped", number, n_leads)
                continue
            rows.append(values)
            if len(rows) >= self.chunk_samples:
                yield np.asarray(rows, np.float32).T
                rows = []
        if rows:
            yield np.asarray(rows, np.float32).T


def open_source(
    wfdb: Path | None,
    text: str | None,
    fs: float | None,
    leads: str | None,
    speed: float,
    chunk_s: float,
    limit_s: float | None = None,
) -> SampleSource:
    """The source the command line names (exactly one of a WFDB record or a text input)."""
    if (wfdb is None) == (text is None):
        raise ConfigurationError("give exactly one input: --wfdb RECORD or --input FILE|-")
    if wfdb is not None:
        return WfdbSource.open(wfdb, speed, chunk_s, limit_s)
    if fs is None or not leads:
        raise ConfigurationError("a text input needs --fs and --leads (e.g. --leads MLII,V1)")
    import sys

    # the source owns the file until the process ends (the runner reads it to the end)
    stream = sys.stdin if text == "-" else Path(str(text)).open(encoding="utf-8")  # noqa: SIM115
    return TextSource(
        fs=fs,
        lead_names=tuple(name.strip() for name in leads.split(",")),
        replayable=text != "-",
        stream=stream,
        chunk_samples=max(1, round(chunk_s * fs)),
    )
