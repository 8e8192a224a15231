"""The delivery engine: where a beat enters, is classified, is stored and is committed.

    fetch -> process (decode, detect, features) -> classify -> write (all sinks at once) -> commit

Offsets are committed only after every sink acknowledged the batch, so a crash at any step means
the batch is fetched again; the sinks' keys make the second write a no-op (`Sink.write`). With
Kafka transactions the committer publishes the batch's Kafka outputs in the same transaction as
its offsets (`ecgstream/io/kafka_transactions.py`), after PostgreSQL, the only sink then. A
restarted engine rebuilds its devices' state from the fetcher's look-back (messages marked
`replay`: processed, nothing emitted). Transient failures are retried with capped backoff and
counted per step (`retry.py`); a `PermanentError` or a programming error stops the engine with
the step and the cause (`DeliveryHaltedError`): nothing is skipped silently. `run` overlaps the
CPU work with the waits: it fetches and processes up to `depth` batches ahead of the one being
classified, written and committed (in order, by one task), and drains on a stop request: every
batch already fetched is finished and committed. `on_step` sees every step boundary (metrics;
the unit tests crash the engine there)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np

from ecgstream.aami import MODEL_CLASSES
from ecgstream.delivery._retry import DeliveryHaltedError, RetryPolicy, retrying
from ecgstream.delivery.ports import (
    BatchOutput,
    Classified,
    Classifier,
    Committer,
    Fetched,
    Fetcher,
    Monitor,
    Processor,
    Sink,
)

__all__ = ["DeliveryEngine", "DeliveryHaltedError", "RetryPolicy"]
T = TypeVar("T")


class DeliveryEngine:
    def __init__(
        self,
        fetcher: Fetcher,
        processor: Processor,
        classifier: Classifier,
        sinks: Sequence[Sink],
        committer: Committer,
        monitor: Monitor | None = None,
        *,
        emits_alarms: bool = True,
        retry: RetryPolicy | None = None,
        on_step: Callable[[str], None] = lambda step: None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.fetcher, self.processor, self.classifier = fetcher, processor, classifier
        self.sinks, self.committer, self.monitor = list(sinks), committer, monitor
        self.emits_alarms = emits_alarms  # a candidate lane's opinion never reaches a nurse
        self.retry = retry or RetryPolicy()
        self.on_step, self._sleep = on_step, sleep
        self.counts: Counter[str] = Counter()  # batches, beats, alarms, dead_letters, ...
        self.retries: Counter[str] = Counter()  # per step
        self.stage_s: dict[str, float] = defaultdict(float)  # wall seconds per step

    async def run(self, stop: asyncio.Event, depth: int = 2) -> None:
        """Deliver batches until `stop` is set; what was fetched by then is finished and
        committed. A halt stops the fetching and is raised here; the fetcher and the processor
        are then ahead of the commits, so they must start over from the committed offsets
        (as after a crash) before the engine runs again."""
        queue: asyncio.Queue[BatchOutput | None] = asyncio.Queue(maxsize=depth)

        async def deliver() -> None:
            while (out := await queue.get()) is not None:
                await self._deliver(out)

        delivering = asyncio.create_task(deliver())
        try:
            while not stop.is_set() and not delivering.done():
                out = await self._fetch_and_process()
                if out is not None:
                    put = asyncio.ensure_future(queue.put(out))
                    await asyncio.wait({put, delivering}, return_when=asyncio.FIRST_COMPLETED)
                    put.cancel()
            if not delivering.done():
                await queue.put(None)
            await delivering
        finally:
            delivering.cancel()

    async def run_once(self) -> BatchOutput | None:
        """One batch through every step; None when the fetcher had nothing."""
        out = await self._fetch_and_process()
        if out is not None:
            await self._deliver(out)
        return out

    async def _fetch_and_process(self) -> BatchOutput | None:
        fetched = await self._step("fetched", self.fetcher.fetch)
        if fetched is None:
            return None
        started = time.perf_counter()
        out = self._process(fetched)
        self._mark("processed", started)
        return out

    async def _deliver(self, out: BatchOutput) -> None:
        started = time.perf_counter()
        await self._classify(out)  # a batch without beats still has ticks and technical alarms
        self._mark("classified", started)
        started = time.perf_counter()
        await asyncio.gather(*(self._write(sink, out) for sink in self.sinks))
        self._mark("written", started)
        await self._step("committed", lambda: self.committer.commit(out))
        self._count(out)
        if self.monitor is not None:
            try:
                await self.monitor.observe(out)
            except Exception:  # statistics are best effort; delivery is not held up for them
                self.counts["monitor_failures"] += 1

    def _process(self, fetched: Fetched) -> BatchOutput:
        ingested = self.processor.ingest(fetched.messages)
        payloads = {(m.partition, m.offset): m for m in fetched.messages}
        letters = [
            (d, payloads[(d.partition, d.offset)].value)
            for d in ingested.dead_letters
            if not payloads[(d.partition, d.offset)].replay
        ]
        empty = np.zeros((0, len(MODEL_CLASSES)), np.float32)
        return BatchOutput([], [], letters, MODEL_CLASSES, ingested, empty, ends=fetched.ends)

    async def _classify(self, out: BatchOutput) -> None:
        pending = out.ingested.beats
        classified = Classified(out.probabilities, MODEL_CLASSES, "")
        if pending:
            windows = np.stack([b.window for b in pending])
            rr = np.stack([b.rr for b in pending])
            classify = self.classifier.classify
            classified = await self._retrying("classify", lambda: classify(windows, rr))
        inhibited = self.processor.inhibited
        out.beats, out.alarms = self.processor.complete(
            pending,
            classified.probabilities,
            classified.classes,
            classified.model_version,
            time.time() * 1000,
            out.ingested.ticks,
            out.ingested.technical,
        )
        out.inhibited = self.processor.inhibited - inhibited
        out.probabilities, out.classes = classified.probabilities, classified.classes
        out.served = classified.batch_beats
        if not self.emits_alarms:
            out.alarms, out.letters = [], []

    async def _write(self, sink: Sink, out: BatchOutput) -> None:
        await self._step(f"written:{sink.name}", lambda: sink.write(out))

    async def _step(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        result = await self._retrying(step, call)
        self._mark(step, started)
        return result

    def _mark(self, step: str, started: float) -> None:
        self.stage_s[step] += time.perf_counter() - started
        self.on_step(step)

    async def _retrying(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        return await retrying(step, call, self.retry, self.retries, self._sleep)

    def _count(self, out: BatchOutput) -> None:
        self.counts["batches"] += 1
        self.counts["chunks"] += out.ingested.chunks
        self.counts["duplicates"] += out.ingested.duplicates
        self.counts["sessions"] += out.ingested.sessions
        self.counts["beats"] += len(out.beats)
        self.counts["alarms"] += sum(not e.is_end for e in out.alarms)
        self.counts["dead_letters"] += len(out.letters)
