"""Alarm handling at the central station, after IEC 60601-1-8: priorities, acknowledge, silence
and escalation of what nobody answered.

Pure and clock-free (every call is told `now`), so the station, its restart (replaying the
stored actions) and the unit tests run the same rules:

- an alarm shows from the moment the station learns of it; high- and medium-priority clinical
  alarms *latch*: they stay until a person acknowledges them, even when the condition is over
  (a VT run of six beats is over before anyone looks); low-priority and technical alarms do not
  latch and clear themselves `clear_after_s` after they were raised, unless acknowledged first;
- silencing pauses the audible signal (and the escalation clock) for a chosen time, at most
  `max_silence_s`; the alarm stays on screen;
- a showing alarm of an escalated priority that nobody acknowledged `escalate_after_s` after it
  showed (silences not counted) is due to escalate, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

PRIORITIES = ("high", "medium", "low")
LATCHING = ("high", "medium")  # clinical priorities that stay until acknowledged
ActionName = Literal["acknowledge", "silence", "escalate", "hl7_refused"]  # the last: audit only


class AlarmActionError(ValueError):
    """An action the board refuses (unknown alarm, a silence too long, ...): the caller's 4xx."""


@dataclass(frozen=True)
class BoardRules:
    escalate_after_s: float = 30.0
    escalate_priorities: tuple[str, ...] = ("high",)
    max_silence_s: float = 120.0
    clear_after_s: float = 60.0  # non-latching alarms (low priority, technical)
    keep_s: float = 24 * 3600.0  # history kept in memory (the database keeps everything)


@dataclass(frozen=True)
class AlarmAction:
    """One person's (or the station's) action on an alarm: what the audit trail stores."""

    alarm_id: str
    action: ActionName
    actor: str  # the key's name; "station" for an escalation
    at: float  # unix time
    silence_s: float | None = None


@dataclass
class BoardAlarm:
    alarm_id: str
    device_id: str
    kind: str
    category: str  # clinical | technical
    priority: str  # high | medium | low
    start_time: float  # unix time of the first evidence
    seen_at: float  # when the station learnt of it: the escalation clock starts here
    fault: str | None = None  # technical alarms: which fault
    ended_at: float | None = None  # AF/VF: the episode's end
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    silenced_by: str | None = None
    silenced_until: float | None = None
    escalated_at: float | None = None
    silence_started_at: float | None = None
    silenced_s: float = 0.0  # silenced time of earlier, replaced silences (escalation clock)

    @property
    def latching(self) -> bool:
        return self.category == "clinical" and self.priority in LATCHING

    def showing(self, now: float, rules: BoardRules) -> bool:
        if self.acknowledged_at is not None:
            return False
        return self.latching or now - self.seen_at < rules.clear_after_s

    def silenced(self, now: float) -> bool:
        return self.silenced_until is not None and now < self.silenced_until

    def state(self, now: float, rules: BoardRules) -> str:
        if self.acknowledged_at is not None:
            return "acknowledged"
        if not self.showing(now, rules):
            return "cleared"
        return "silenced" if self.silenced(now) else "active"

    def view(self, now: float, rules: BoardRules) -> dict[str, object]:
        """What the page shows of it (no patient identifier)."""
        return {
            "alarm_id": self.alarm_id,
            "bed": self.device_id,
            "kind": self.kind,
            "category": self.category,
            "priority": self.priority,
            "fault": self.fault,
            "start_time": self.start_time,
            "seen_at": self.seen_at,
            "ended_at": self.ended_at,
            "state": self.state(now, rules),
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
            "silenced_by": self.silenced_by,
            "silenced_until": self.silenced_until if self.silenced(now) else None,
            "escalated_at": self.escalated_at,
        }


def sort_key(alarm: BoardAlarm) -> tuple[int, int, float]:
    """Clinical before technical, then by priority, then the newest first."""
    return (
        alarm.category != "clinical",
        PRIORITIES.index(alarm.priority) if alarm.priority in PRIORITIES else len(PRIORITIES),
        -alarm.seen_at,
    )


class AlarmBoard:
    """Every alarm of the ward the station knows of, and what people did about them."""

    def __init__(self, rules: BoardRules | None = None) -> None:
        self.rules = rules or BoardRules()
        self._alarms: dict[str, BoardAlarm] = {}
        self.version = 0  # changes whenever something a page shows may have changed

    # -- what the stream says -----------------------------------------------------------------

    def raised(
        self,
        *,
        alarm_id: str,
        device_id: str,
        kind: str,
        category: str,
        priority: str,
        start_time: float,
        now: float,
        fault: str | None = None,
    ) -> BoardAlarm:
        """An alarm read from `ecg.alerts`; a redelivery of one already known changes nothing."""
        known = self._alarms.get(alarm_id)
        if known is not None:
            return known
        alarm = BoardAlarm(
            alarm_id, device_id, kind, category, priority, start_time, seen_at=now, fault=fault
        )
        self._alarms[alarm_id] = alarm
        self.version += 1
        return alarm

    def ended(self, alarm_id: str, now: float) -> None:
        alarm = self._alarms.get(alarm_id)
        if alarm is not None and alarm.ended_at is None:
            alarm.ended_at = now
            self.version += 1

    # -- what people do -----------------------------------------------------------------------

    # An action is checked first and applied after the audit trail has it: the station stores
    # what `acknowledgement`/`silencing`/`due_escalations` return, then calls `apply`.

    def acknowledgement(self, alarm_id: str, actor: str, now: float) -> AlarmAction:
        alarm = self._get(alarm_id)
        if alarm.acknowledged_at is not None:
            raise AlarmActionError(f"alarm already acknowledged by {alarm.acknowledged_by}")
        return AlarmAction(alarm_id, "acknowledge", actor, now)

    def silencing(self, alarm_id: str, actor: str, seconds: float, now: float) -> AlarmAction:
        alarm = self._get(alarm_id)
        if not 0 < seconds <= self.rules.max_silence_s:
            raise AlarmActionError(
                f"silence for 1 to {self.rules.max_silence_s:g} s, not {seconds:g}"
            )
        if alarm.acknowledged_at is not None:
            raise AlarmActionError("an acknowledged alarm has nothing to silence")
        return AlarmAction(alarm_id, "silence", actor, now, silence_s=seconds)

    def due_escalations(
        self, now: float, keep: Callable[[BoardAlarm], bool] | None = None
    ) -> list[AlarmAction]:
        """Escalations due now (the caller publishes and stores each, then applies it), of the
        alarms `keep` accepts (all by default)."""
        due = []
        for alarm in self._alarms.values():
            if (
                (keep is None or keep(alarm))
                and alarm.escalated_at is None
                and alarm.category == "clinical"
                and alarm.priority in self.rules.escalate_priorities
                and alarm.showing(now, self.rules)
                and not alarm.silenced(now)
                and self._unanswered_s(alarm, now) >= self.rules.escalate_after_s
            ):
                due.append(AlarmAction(alarm.alarm_id, "escalate", "station", now))
        return due

    def apply(self, action: AlarmAction) -> AlarmAction:
        """Record an action (also how a restarted station replays the audit trail)."""
        alarm = self._alarms.get(action.alarm_id)
        if alarm is None:
            return action  # an action on an alarm older than what is kept
        if action.action == "acknowledge":
            alarm.acknowledged_by, alarm.acknowledged_at = action.actor, action.at
        elif action.action == "silence":
            if alarm.silenced_until is not None:
                # a running silence replaced: count the part that passed
                alarm.silenced_s += _overlap(alarm, action.at)
            alarm.silence_started_at = action.at
            alarm.silenced_by = action.actor
            alarm.silenced_until = action.at + (action.silence_s or 0.0)
        elif action.action == "escalate":
            alarm.escalated_at = action.at
        self.version += 1
        return action

    # -- what the page shows ------------------------------------------------------------------

    def showing(
        self, now: float, keep: Callable[[BoardAlarm], bool] | None = None
    ) -> list[BoardAlarm]:
        """The alarms on screen, in the ward's order; of those `keep` accepts (all by default:
        the station leaves out beds that left the ward)."""
        return sorted(
            (
                a
                for a in self._alarms.values()
                if a.showing(now, self.rules) and (keep is None or keep(a))
            ),
            key=sort_key,
        )

    def get(self, alarm_id: str) -> BoardAlarm | None:
        return self._alarms.get(alarm_id)

    def of_bed(self, device_id: str) -> list[BoardAlarm]:
        """A bed's alarms, the newest first."""
        return sorted(
            (a for a in self._alarms.values() if a.device_id == device_id),
            key=lambda a: -a.seen_at,
        )

    def newest(self, device_id: str, now: float) -> BoardAlarm | None:
        """The bed's most urgent showing alarm, else its newest one."""
        showing = [a for a in self.showing(now) if a.device_id == device_id]
        if showing:
            return showing[0]
        alarms = self.of_bed(device_id)
        return alarms[0] if alarms else None

    def audible(self, now: float, keep: Callable[[BoardAlarm], bool] | None = None) -> str | None:
        """The priority the station should sound now: the highest of the showing, unsilenced
        clinical alarms (None: quiet)."""
        for alarm in self.showing(now, keep):
            if alarm.category == "clinical" and not alarm.silenced(now):
                return alarm.priority
        return None

    def prune(self, now: float) -> None:
        """Forget what is older than `keep_s` and no longer showing (bounded memory)."""
        old = [
            a.alarm_id
            for a in self._alarms.values()
            if now - a.seen_at > self.rules.keep_s and not a.showing(now, self.rules)
        ]
        for alarm_id in old:
            del self._alarms[alarm_id]

    def __len__(self) -> int:
        return len(self._alarms)

    def _get(self, alarm_id: str) -> BoardAlarm:
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            raise AlarmActionError(f"no alarm {alarm_id}")
        return alarm

    def _unanswered_s(self, alarm: BoardAlarm, now: float) -> float:
        return now - alarm.seen_at - alarm.silenced_s - _overlap(alarm, now)


def _overlap(alarm: BoardAlarm, now: float) -> float:
    """How much of the alarm's current silence lies before `now`."""
    if alarm.silenced_until is None or alarm.silence_started_at is None:
        return 0.0
    return max(0.0, min(now, alarm.silenced_until) - alarm.silence_started_at)


def replay_actions(board: AlarmBoard, actions: Iterable[AlarmAction]) -> None:
    for action in sorted(actions, key=lambda a: a.at):
        board.apply(action)
