"""The edge ingest's logic with fakes (the real broker and database: tests/integration)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ecgstream.alarms import Alarm
from ecgstream.io.edge_ingest import EdgeResultsIngest, is_edge_record
from ecgstream.messages import (
    AlarmEvent,
    BeatResult,
    alarm_from_message,
    alarm_message,
    beat_from_message,
    beat_message,
)

CLASSES = ("N", "S", "V", "F")


def _beat(sample: int, session: str = "") -> BeatResult:
    return BeatResult(
        "edge-1", "pt-1", sample, 1000.0 + sample / 360, "V", (0.1, 0.1, 0.7, 0.1), "m1",
        12.5, 0.8, None, session,
    )  # fmt: skip


def test_results_come_back_from_their_messages_unchanged() -> None:
    for beat in (_beat(360), _beat(720, "boot-2")):
        assert beat_from_message(beat_message(beat, CLASSES)) == beat
    alarm = Alarm("edge-1:vtach:360", "edge-1", "vtach", "high", 360, 1001.0, {"beats": 3})
    raised = AlarmEvent(alarm, "pt-1", "m1")
    ended = AlarmEvent(alarm, "pt-1", "m1", ended_sample=900, ended_time=1002.5)
    assert alarm_from_message(alarm_message(raised)) == raised
    assert alarm_from_message(alarm_message(ended)) == ended


@dataclass
class _Record:
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class _TP:
    topic: str
    partition: int = 0


@dataclass
class _Consumer:
    """Two topics of records; `getmany` hands the next batch; a commit records the position."""

    batches: list[dict[_TP, list[_Record]]]
    position: int = 0
    committed: list[int] = field(default_factory=list)
    fail_commit_once: bool = False
    on_commit: object = None

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        if self.position >= len(self.batches):
            await asyncio.sleep(0)
            return {}
        self.position += 1
        return self.batches[self.position - 1]

    async def commit(self) -> None:
        if self.fail_commit_once:
            self.fail_commit_once = False
            raise ConnectionError("broker went away")
        self.committed.append(self.position)
        if self.on_commit is not None:
            self.on_commit()  # type: ignore[operator]


@dataclass
class _Sink:
    beats: dict[str, BeatResult] = field(default_factory=dict)
    alarms: dict[str, AlarmEvent] = field(default_factory=dict)
    writes: int = 0

    async def insert(self, beats: list[BeatResult], alarms: list[AlarmEvent]) -> None:
        self.writes += 1
        for beat in beats:
            self.beats.setdefault(beat.beat_id, beat)  # ON CONFLICT DO NOTHING
        for event in alarms:
            self.alarms.setdefault(event.alarm.alarm_id, event)


EDGE = [("origin", b"edge")]


def test_only_edge_records_are_stored_and_offsets_follow_the_write() -> None:
    beats = [_beat(360 * i) for i in range(1, 6)]
    stream_beat = beat_message(_beat(99_999), CLASSES)
    consumer = _Consumer(
        [
            {
                _TP("ecg.beats"): [
                    *[_Record(beat_message(b, CLASSES), EDGE) for b in beats[:3]],
                    _Record(stream_beat, []),  # the stream's own: stored by the stream
                    _Record(b"{not json", EDGE),
                ]
            },
            {_TP("ecg.beats"): [_Record(beat_message(b, CLASSES), EDGE) for b in beats[3:]]},
        ]
    )
    sink = _Sink()
    ingest = EdgeResultsIngest(consumer, sink, "ecg.beats", "ecg.alerts")  # type: ignore[arg-type]
    assert asyncio.run(ingest.run_once()) == 3
    assert asyncio.run(ingest.run_once()) == 2
    assert sorted(sink.beats) == sorted(b.beat_id for b in beats)
    assert consumer.committed == [1, 2]
    assert ingest.stats()["skipped"] == 1 and ingest.stats()["malformed"] == 1
    assert is_edge_record(EDGE) and not is_edge_record(None) and not is_edge_record([("x", b"")])


def test_a_commit_that_fails_after_the_write_stores_the_batch_once() -> None:
    beats = [_beat(360 * i) for i in range(1, 4)]
    batch = {_TP("ecg.beats"): [_Record(beat_message(b, CLASSES), EDGE) for b in beats]}
    consumer = _Consumer([batch], fail_commit_once=True)
    sink = _Sink()
    ingest = EdgeResultsIngest(consumer, sink, "ecg.beats", "ecg.alerts")  # type: ignore[arg-type]

    async def rewind() -> None:  # the uncommitted batch is fetched again
        consumer.position = consumer.committed[-1] if consumer.committed else 0

    ingest._rewind = rewind  # type: ignore[method-assign]

    async def run() -> None:
        stop = asyncio.Event()
        consumer.on_commit = stop.set  # one good commit, then stop
        await asyncio.wait_for(ingest.run(stop), 30)

    asyncio.run(run())
    assert sink.writes == 2 and len(sink.beats) == 3  # written twice, stored once
    assert consumer.committed == [1] and ingest.stats()["errors"] == {"ConnectionError": 1}
