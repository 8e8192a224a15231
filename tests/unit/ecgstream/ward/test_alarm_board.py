import pytest

from ecgstream.ward.alarm_board import (
    AlarmActionError,
    AlarmBoard,
    BoardAlarm,
    BoardRules,
    replay_actions,
)

RULES = BoardRules(escalate_after_s=30, max_silence_s=120, clear_after_s=60)


def raise_alarm(
    board: AlarmBoard,
    alarm_id: str,
    priority: str = "high",
    *,
    now: float = 0.0,
    kind: str = "vtach",
    category: str = "clinical",
    bed: str = "bed-1",
) -> None:
    board.raised(
        alarm_id=alarm_id,
        device_id=bed,
        kind=kind,
        category=category,
        priority=priority,
        start_time=now - 3,
        now=now,
    )


def test_alarms_are_ordered_clinical_first_then_by_priority_then_newest() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "low", "low", now=1)
    raise_alarm(board, "tech", "medium", now=2, kind="technical", category="technical")
    raise_alarm(board, "high-old", "high", now=3)
    raise_alarm(board, "medium", "medium", now=4)
    raise_alarm(board, "high-new", "high", now=5)
    assert [a.alarm_id for a in board.showing(6)] == [
        "high-new",
        "high-old",
        "medium",
        "low",
        "tech",
    ]


def test_high_and_medium_latch_until_acknowledged_low_and_technical_clear_themselves() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "vt", "high")
    raise_alarm(board, "af", "medium", kind="afib")
    raise_alarm(board, "brady", "low", kind="brady")
    raise_alarm(board, "noise", "medium", kind="technical", category="technical")
    board.ended("af", 10)  # the episode is over: still shown until someone saw it
    assert {a.alarm_id for a in board.showing(59)} == {"vt", "af", "brady", "noise"}
    assert {a.alarm_id for a in board.showing(61)} == {"vt", "af"}
    board.apply(board.acknowledgement("vt", "nurse a", 62))
    assert [a.alarm_id for a in board.showing(63)] == ["af"]
    assert board.get("vt").state(63, RULES) == "acknowledged"  # type: ignore[union-attr]


def test_a_redelivered_alarm_changes_nothing() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "vt", now=0)
    board.apply(board.acknowledgement("vt", "nurse a", 5))
    raise_alarm(board, "vt", now=20)  # the same alarm read again (a restart, a rebalance)
    assert board.get("vt").acknowledged_by == "nurse a"  # type: ignore[union-attr]
    assert board.get("vt").seen_at == 0  # type: ignore[union-attr]


def test_an_unanswered_high_alarm_escalates_once_after_the_delay() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "vt", "high", now=100)
    raise_alarm(board, "af", "medium", now=100, kind="afib")  # medium: not escalated
    assert board.due_escalations(129.9) == []
    due = board.due_escalations(130)
    assert [(a.alarm_id, a.action, a.actor) for a in due] == [("vt", "escalate", "station")]
    board.apply(due[0])
    assert board.due_escalations(200) == []


def test_acknowledging_in_time_stops_the_escalation() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "vt", now=0)
    board.apply(board.acknowledgement("vt", "nurse a", 10))
    assert board.due_escalations(1000) == []
    with pytest.raises(AlarmActionError, match="already acknowledged by nurse a"):
        board.acknowledgement("vt", "nurse b", 11)


def test_a_silence_pauses_sound_and_the_escalation_clock_for_its_time() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "vt", now=0)
    assert board.audible(1) == "high"
    board.apply(board.silencing("vt", "nurse a", 60, now=10))
    assert board.audible(11) is None
    assert board.get("vt").state(11, RULES) == "silenced"  # type: ignore[union-attr]
    assert board.due_escalations(80) == []  # 80 s since seen, 60 of them silenced
    assert board.audible(71) == "high"  # the silence ran out
    assert [a.alarm_id for a in board.due_escalations(90)] == ["vt"]  # 30 s unanswered


def test_a_silence_longer_than_allowed_or_of_an_unknown_alarm_is_refused() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "vt")
    with pytest.raises(AlarmActionError, match="1 to 120 s"):
        board.silencing("vt", "nurse a", 600, 1)
    with pytest.raises(AlarmActionError, match="no alarm"):
        board.acknowledgement("nope", "nurse a", 1)


def test_a_restarted_board_replaying_the_stored_actions_is_the_same_board() -> None:
    live = AlarmBoard(RULES)
    raise_alarm(live, "vt", now=0)
    raise_alarm(live, "vt2", now=0, bed="bed-2")
    actions = [live.apply(live.silencing("vt", "nurse a", 60, 5))]
    actions.append(live.apply(live.acknowledgement("vt", "nurse b", 20)))
    actions += [live.apply(a) for a in live.due_escalations(40)]
    restarted = AlarmBoard(RULES)
    raise_alarm(restarted, "vt", now=0)
    raise_alarm(restarted, "vt2", now=0, bed="bed-2")
    replay_actions(restarted, reversed(actions))  # any order: replayed by time
    for alarm_id in ("vt", "vt2"):
        assert restarted.get(alarm_id).view(50, RULES) == live.get(alarm_id).view(50, RULES)  # type: ignore[union-attr]
    assert restarted.due_escalations(100) == []  # vt2 escalated already, vt acknowledged


def test_newest_gives_a_beds_most_urgent_showing_alarm() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "brady", "low", now=0, kind="brady")
    raise_alarm(board, "vt", "high", now=1)
    raise_alarm(board, "pause", "low", now=2, kind="pause")
    assert board.newest("bed-1", 3).alarm_id == "vt"  # type: ignore[union-attr]
    board.apply(board.acknowledgement("vt", "n", 4))
    assert board.newest("bed-1", 5).alarm_id == "pause"  # type: ignore[union-attr]
    assert board.newest("bed-9", 5) is None


def test_what_is_old_and_no_longer_showing_is_forgotten() -> None:
    board = AlarmBoard(BoardRules(keep_s=100))
    raise_alarm(board, "old-ack", now=0)
    board.apply(board.acknowledgement("old-ack", "n", 1))
    raise_alarm(board, "old-latched", now=0)
    raise_alarm(board, "new", now=150)
    board.prune(200)
    assert board.get("old-ack") is None and board.get("old-latched") is not None
    assert len(board) == 2


def test_alarms_of_beds_that_left_the_ward_neither_show_sound_nor_escalate() -> None:
    board = AlarmBoard(RULES)
    raise_alarm(board, "here", now=0, bed="bed-1")
    raise_alarm(board, "gone", now=0, bed="bed-2")

    def on_ward(alarm: BoardAlarm) -> bool:
        return alarm.device_id == "bed-1"

    assert [a.alarm_id for a in board.showing(1, on_ward)] == ["here"]
    assert [a.alarm_id for a in board.due_escalations(100, on_ward)] == ["here"]
    board.apply(board.acknowledgement("here", "n", 101))
    assert board.audible(102, on_ward) is None and board.audible(102) == "high"
