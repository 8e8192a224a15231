"""The delivery engine's monitor port over the monitor actor: a batch's statistics are handed
over while the next batch is delivered, never on the delivery's path.

At most one call is in flight: if the monitor has not taken the previous batch within
MONITOR_WAIT_S, this batch's statistics are dropped and counted (`dropped`), never queued
without bound. The partitions' lag goes with a batch every LAG_REPORT_S, and alone when the
stream is idle (the lag gauge must still say 0, or how far behind a stall is).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import ray

from actors._monitor import MONITOR_NAME
from actors.naming import namespace
from ecgstream.delivery.ports import BatchOutput
from ecgstream.monitoring.drift import summary_features
from ecgstream.monitoring.fleet import BeatSummary, WindowSummary
from ecgstream.monitoring.metrics import ConsumerReport

MONITOR_WAIT_S = 2.0
LAG_REPORT_S = 5.0


class MonitorFeed:
    def __init__(
        self, lag: Callable[[], Awaitable[dict[int, int]]], retries: Callable[[], int]
    ) -> None:
        self._lag, self._retries = lag, retries
        self._reported_retries = 0
        self._lag_sent_at = 0.0
        self._monitor: Any = None
        self._call: Any = None
        self.dropped = 0  # signal windows whose statistics the monitor never got

    async def observe(self, out: BatchOutput) -> None:
        windows = WindowSummary.of(out.ingested.windows) if out.ingested.windows else None
        await self._send(windows, _beat_summary(out), await self._report(out))

    async def report_lag_if_due(self) -> None:
        """Called while idle: the lag alone, at most every LAG_REPORT_S."""
        if time.monotonic() - self._lag_sent_at >= LAG_REPORT_S:
            report = ConsumerReport(lag_by_partition=await self._lag())
            self._lag_sent_at = time.monotonic()
            await self._send(None, None, report)

    async def _report(self, out: BatchOutput) -> ConsumerReport:
        retries = self._retries()
        report = ConsumerReport(
            chunks=out.ingested.chunks,
            duplicates=out.ingested.duplicates,
            sessions=out.ingested.sessions,
            retries=retries - self._reported_retries,
            beats_by_class=Counter(b.label for b in out.beats),
            latencies_s=[b.latency_ms / 1000 for b in out.beats],
            dead_letters_by_reason=Counter(letter.reason for letter, _ in out.letters),
            alarms_by_kind=Counter(
                (e.alarm.kind, e.alarm.category) for e in out.alarms if not e.is_end
            ),
            serve_batch_sizes=[out.served] if out.served else [],
            alarms_inhibited=out.inhibited,
            unanalysable_beats=sum(b.signal_fault is not None for b in out.beats),
        )
        self._reported_retries = retries
        if time.monotonic() - self._lag_sent_at >= LAG_REPORT_S:
            report.lag_by_partition = await self._lag()
            self._lag_sent_at = time.monotonic()
        return report

    async def _send(
        self, windows: WindowSummary | None, beats: BeatSummary | None, report: ConsumerReport
    ) -> None:
        if windows is None and beats is None and report.lag_by_partition is None:
            return
        if self._call is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._call), MONITOR_WAIT_S)
            except Exception:
                self._drop(windows, report)
                self._monitor = None  # it may have been restarted: look it up again
                return
        if self._monitor is None:
            try:
                self._monitor = ray.get_actor(MONITOR_NAME, namespace=namespace())
            except ValueError:
                self._drop(windows, report)
                return
        self._call = self._monitor.observe.remote(windows or WindowSummary.of([]), beats, report)

    def _drop(self, windows: WindowSummary | None, report: ConsumerReport) -> None:
        self.dropped += windows.windows if windows is not None else 0
        if report.lag_by_partition is not None:
            self._lag_sent_at = 0.0  # send the lag again with the next batch


def _beat_summary(out: BatchOutput) -> BeatSummary | None:
    """The delivered beats' predictions and features (the replayed look-back is not news)."""
    live = [b for b in out.ingested.beats if not b.replay]
    if not live or not out.beats:
        return None
    index = [i for i, b in enumerate(out.ingested.beats) if not b.replay]
    windows, rr = np.stack([b.window for b in live]), np.stack([b.rr for b in live])
    return BeatSummary(
        device_ids=[b.device_id for b in out.beats],
        labels=[b.label for b in out.beats],
        probabilities=out.probabilities[index],
        features=summary_features(windows, rr),
        rr_prev_s=np.array([np.nan if b.rr_prev_s is None else b.rr_prev_s for b in out.beats]),
        stream_time=np.array([b.time_s for b in out.beats]),
    )
