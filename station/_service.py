"""The station's state and the loops that keep it current: Kafka readers for samples, beats and
alarms, the escalation clock, and the push to every open page.

Start-up order (so a restart forgets nothing a nurse did): the alarms of the last
`alarm_lookback_s` are read back from `ecg.alerts`, then the stored actions of that time are
replayed onto them, then the live loops start. Samples and beats start one strip-length back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from ecgstream.errors import WireFormatError
from ecgstream.io.kafka import make_admin, make_consumer, make_producer
from ecgstream.io.station_store import actions_since, record_action
from ecgstream.messages import alarm_from_message
from ecgstream.settings import Settings
from ecgstream.ward.alarm_board import (
    AlarmAction,
    AlarmBoard,
    BoardAlarm,
    BoardRules,
    replay_actions,
)
from ecgstream.ward.beds import Ward, WardRules
from ecgstream.wire import decode_chunk
from station._counters import Counters
from station._hl7_forwarder import forward_alarms

log = logging.getLogger(__name__)
RESYNC = ""  # in a page's queue: it missed ticks, send it a snapshot
RHYTHM_KINDS = ("asystole", "vfib", "vtach", "afib", "svt", "brady", "tachy", "pause")


class StationService:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        station = settings.station
        self.board = AlarmBoard(
            BoardRules(
                escalate_after_s=station.escalate_after_s,
                escalate_priorities=tuple(station.escalate_priorities),
                max_silence_s=station.max_silence_s,
                clear_after_s=station.clear_after_s,
            )
        )
        self.ward = Ward(WardRules())
        self.counters = Counters()
        self._clients: set[asyncio.Queue[str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._newest_chunk_ts: dict[str, float] = {}  # bed -> Kafka timestamp of its newest
        self._alarms_sent = ""
        self._alarms_read_until = time.time()  # unix time of the newest alarm record read
        self.ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_alarms()
        self.ready.set()
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "signal": self._read_signal,
            "alarms": self._read_alarms_live,
            "escalation": self._escalate,
            "push": self._push,
        }
        if self.settings.station.hl7_receiver:
            loops["hl7"] = lambda: forward_alarms(
                self.settings, self.pool, self.ward, self.counters
            )
        self._tasks = [
            asyncio.create_task(self._supervised(name, loop), name=f"station-{name}")
            for name, loop in loops.items()
        ]

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop for good: one that fails (a broker or database away) is logged (its
        exception's type only: a message could quote a bed), counted in `/api/status` and
        started again; meanwhile the tiles of beds whose signal stopped say `no signal`."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters.restarts[name] = self.counters.restarts.get(name, 0) + 1
                log.warning(
                    "station %s loop failed (%s); restarting in 2 s", name, type(exc).__name__
                )
                await asyncio.sleep(2)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- alarms -------------------------------------------------------------------------------

    def _alarm_record(self, value: bytes, timestamp_ms: int) -> None:
        try:
            event = alarm_from_message(value)
        except (ValueError, KeyError, TypeError):
            self.counters.reject("alarm_format")
            return
        self.counters.alarm_events += 1
        seen = timestamp_ms / 1000
        self._alarms_read_until = max(self._alarms_read_until, seen)
        alarm = event.alarm
        if event.is_end:
            self.board.ended(alarm.alarm_id, seen)
            return
        self.board.raised(
            alarm_id=alarm.alarm_id,
            device_id=alarm.device_id,
            kind=alarm.kind,
            category=alarm.category,
            priority=alarm.severity,
            start_time=alarm.start_time,
            now=seen,
            fault=alarm.evidence.get("fault") if alarm.category == "technical" else None,
        )
        self.ward.bed(alarm.device_id)  # a bed with an alarm has a tile, signal or not

    async def _load_alarms(self) -> None:
        """The alarms of the look-back from Kafka up to its current end, then the stored actions."""
        since = time.time() - self.settings.station.alarm_lookback_s
        self._alarms_read_until = time.time()
        consumer = make_consumer(self.settings, group_id=None, role="subscriber")
        await consumer.start()
        try:
            parts = await _assign_from(self.settings, consumer, self.settings.topics.alerts, since)
            ends = await consumer.end_offsets(parts)
            while [p for p in parts if await consumer.position(p) < ends[p]]:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        self._alarm_record(record.value, record.timestamp)
        finally:
            await consumer.stop()
        replay_actions(self.board, await actions_since(self.pool, since))
        log.info("station: %d alarms of the look-back loaded", len(self.board))

    async def _read_alarms_live(self) -> None:
        consumer = make_consumer(self.settings, group_id=None, role="subscriber")
        await consumer.start()
        try:
            # from where the look-back (or the loop before a restart) stopped: nothing missed
            since = self._alarms_read_until - 1.0
            await _assign_from(self.settings, consumer, self.settings.topics.alerts, since)
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        self._alarm_record(record.value, record.timestamp)
        finally:
            await consumer.stop()

    async def act(self, action: AlarmAction, key_id: str | None) -> AlarmAction:
        """Store an action in the audit trail, then apply it: nothing shows as done that the
        trail does not hold."""
        alarm = self.board.get(action.alarm_id)
        device = alarm.device_id if alarm else ""
        await record_action(self.pool, action, device, key_id)
        return self.board.apply(action)

    async def _escalate(self) -> None:
        producer = make_producer(self.settings, "pager")
        await producer.start()
        try:
            while True:
                await asyncio.sleep(0.5)
                now = time.time()
                for action in self.board.due_escalations(now, self._on_ward(now)):
                    alarm = self.board.get(action.alarm_id)
                    if alarm is None:
                        continue
                    message = {
                        "event": "escalated",
                        "alarm_id": alarm.alarm_id,
                        "bed": alarm.device_id,
                        "ward": self.settings.station.ward,
                        "kind": alarm.kind,
                        "priority": alarm.priority,
                        "seen_at": round(alarm.seen_at, 3),
                        "escalated_at": round(action.at, 3),
                        "unanswered_s": round(action.at - alarm.seen_at, 1),
                    }
                    try:
                        await producer.send_and_wait(
                            self.settings.topics.escalations,
                            json.dumps(message).encode(),
                            key=alarm.device_id.encode(),
                        )
                        await self.act(action, key_id=None)
                    except Exception as exc:  # retried on the next turn: it is still due
                        self.counters.escalation_failures += 1
                        log.warning("escalation not delivered (%s); retrying", type(exc).__name__)
                        continue
                    self.counters.escalations += 1
                self.board.prune(time.time())
        finally:
            await producer.stop()

    # -- signal -------------------------------------------------------------------------------

    async def _read_signal(self) -> None:
        topics = self.settings.topics
        consumer = make_consumer(
            self.settings, group_id=None, role="subscriber", fetch_max_wait_ms=100
        )
        await consumer.start()
        try:
            since = time.time() - self.ward.rules.keep_s
            await _assign_from(self.settings, consumer, topics.samples, since, also=(topics.beats,))
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                now = time.time()
                for tp, records in batch.items():
                    if tp.topic == topics.samples:
                        for record in records:
                            self._chunk(record.value, record.timestamp, now)
                    else:
                        for record in records:
                            self._beat(record.value)
        finally:
            await consumer.stop()

    def _chunk(self, value: bytes, timestamp_ms: int, now: float) -> None:
        try:
            chunk = decode_chunk(value)
        except WireFormatError as exc:
            self.counters.reject(exc.reason.value)
            return
        self.counters.chunks += 1
        # when it was published (never later than now): a backlog read at start-up is old
        self.ward.add_chunk(chunk, min(now, timestamp_ms / 1000))
        self._newest_chunk_ts[chunk.device_id] = timestamp_ms / 1000

    def _beat(self, value: bytes) -> None:
        try:
            beat = json.loads(value)
            self.ward.add_beat(beat)
        except (ValueError, KeyError, TypeError):
            self.counters.reject("beat_format")
            return
        self.counters.beats += 1

    # -- what the pages get -------------------------------------------------------------------

    def present(self, bed_id: str, now: float) -> bool:
        """A bed is on the ward while it sends, and `forget_bed_after_s` after its last chunk
        (a bed never heard from: after its newest alarm). An unplugged monitor, a discharged
        patient, a finished replay or benchmark leave the page and stop sounding."""
        bed = self.ward.beds.get(bed_id)
        last = bed.last_heard if bed is not None else None
        if last is None:
            alarms = self.board.of_bed(bed_id)
            last = alarms[0].seen_at if alarms else None
        return last is not None and now - last < self.settings.station.forget_bed_after_s

    def _on_ward(self, now: float) -> Callable[[BoardAlarm], bool]:
        return lambda alarm: self.present(alarm.device_id, now)

    def bed_summary(self, device_id: str, now: float) -> dict[str, Any]:
        bed = self.ward.bed(device_id)
        showing = [a for a in self.board.showing(now) if a.device_id == device_id]
        rhythm = next((a.kind for a in showing if a.kind in RHYTHM_KINDS), None)
        newest = self.board.newest(device_id, now)
        summary = bed.summary(now, rhythm)
        fault = next((a.fault for a in showing if a.category == "technical" and a.fault), None)
        if fault and summary["signal"] == "analysable":  # the monitor saw a sensor fault
            summary["signal"] = fault
        return {**summary, "alarm": newest.view(now, self.board.rules) if newest else None}

    def bed_history(self, device_id: str, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The bed's stored alarms with their actions, and those the station read from Kafka
        that the database does not hold (yet), the newest first."""
        known = {h["alarm_id"] for h in stored}
        extra = []
        for alarm in self.board.of_bed(device_id):
            if alarm.alarm_id in known:
                continue
            done: list[tuple[str, str | None, float | None]] = [
                ("silence", alarm.silenced_by, alarm.silence_started_at),
                ("acknowledge", alarm.acknowledged_by, alarm.acknowledged_at),
                ("escalate", "station", alarm.escalated_at),
            ]
            actions: list[dict[str, Any]] = [
                {"action": name, "actor": actor, "at": at, "silence_s": None}
                for name, actor, at in sorted(
                    (d for d in done if d[2] is not None), key=lambda d: d[2] or 0.0
                )
            ]
            extra.append(
                {
                    "alarm_id": alarm.alarm_id,
                    "kind": alarm.kind,
                    "category": alarm.category,
                    "fault": alarm.fault,
                    "priority": alarm.priority,
                    "start_time": alarm.start_time,
                    "end_time": alarm.ended_at,
                    "stored_at": None,
                    "actions": actions,
                }
            )
        return sorted(stored + extra, key=lambda h: -h["start_time"])

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        tile_s = self.ward.rules.tile_s
        return {
            "type": "snapshot",
            "now": now,
            "ward": self.settings.station.ward,
            "tile_s": tile_s,
            "beds": {
                bed_id: {**self.bed_summary(bed_id, now), "strip": bed.strip(tile_s)}
                for bed_id, bed in sorted(self.ward.beds.items())
                if self.present(bed_id, now)
            },
            "alarms": [
                a.view(now, self.board.rules) for a in self.board.showing(now, self._on_ward(now))
            ],
            "audible": self.board.audible(now, self._on_ward(now)),
            "max_silence_s": self.board.rules.max_silence_s,
        }

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._clients.add(queue)
        self.counters.clients = len(self._clients)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._clients.discard(queue)
        self.counters.clients = len(self._clients)

    async def _push(self) -> None:
        interval = self.settings.station.push_interval_s
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            beds: dict[str, Any] = {}
            on_ward = self._on_ward(now)
            for bed_id, bed in self.ward.beds.items():
                times, mv = bed.take_new_points()
                if not self.present(bed_id, now):
                    continue
                if times and bed_id in self._newest_chunk_ts:
                    self.counters.push_delays.append(now - self._newest_chunk_ts[bed_id])
                beds[bed_id] = {**self.bed_summary(bed_id, now), "t": times, "mv": mv}
            tick: dict[str, Any] = {"type": "tick", "now": now, "beds": beds}
            tick["audible"] = self.board.audible(now, on_ward)
            # sent when it changed: an alarm came or went, an action, or a silence or a
            # non-latching alarm running out
            alarms = [a.view(now, self.board.rules) for a in self.board.showing(now, on_ward)]
            shown = json.dumps(alarms)
            if shown != self._alarms_sent:
                self._alarms_sent = shown
                tick["alarms"] = alarms
            self._broadcast(json.dumps(tick, separators=(",", ":")))

    def _broadcast(self, text: str) -> None:
        self.counters.pushes += 1
        for queue in list(self._clients):
            if queue.full():  # a page that fell behind: what it missed is replaced by a snapshot
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)
                continue
            queue.put_nowait(text)


async def _assign_from(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    topic: str,
    since: float,
    also: Iterable[str] = (),
) -> list[TopicPartition]:
    """Assign every partition of the topics and seek each to the first record after `since`
    (or its end): a reader that needs no consumer group and commits nothing."""
    admin = make_admin(settings, "subscriber")
    await admin.start()
    try:
        described = await admin.describe_topics([topic, *also])
    finally:
        await admin.close()
    parts = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        for p in sorted(t["partitions"], key=lambda p: p["partition"])
    ]
    if not parts:
        raise RuntimeError(f"no partitions of {topic} (does the topic exist?)")
    consumer.assign(parts)
    offsets = await consumer.offsets_for_times({p: int(since * 1000) for p in parts})
    ends = await consumer.end_offsets(parts)
    for p in parts:
        found = offsets.get(p)
        consumer.seek(p, found.offset if found is not None else ends[p])
    return parts
