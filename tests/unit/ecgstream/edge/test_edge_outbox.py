"""The edge outbox's pruning: acknowledged rows go by age and by count, unsent rows never."""

from __future__ import annotations

import time
from pathlib import Path

from ecgstream.edge.outbox import Outbox
from ecgstream.io.edge_forward import KafkaForwarder, KafkaTarget, Retention


def _outbox(tmp_path: Path, rows: int) -> Outbox:
    box = Outbox(tmp_path / "outbox.sqlite")
    box.add([("beat", f"d1:{i}", b"{}") for i in range(rows)])
    return box


def _sent_ids(box: Outbox) -> list[str]:
    return [r[0] for r in box._db.execute("SELECT message_id FROM outbox WHERE sent_at NOT NULL")]


def test_sent_rows_older_than_the_retention_go_and_unsent_rows_stay(tmp_path: Path) -> None:
    box = _outbox(tmp_path, 10)
    box.mark_sent([f"d1:{i}" for i in range(6)])
    now = time.time()
    assert box.prune(keep_sent_s=3600, max_sent_rows=100, now=now) == 0  # sent just now
    assert box.prune(keep_sent_s=3600, max_sent_rows=100, now=now + 7200) == 6
    assert box.counts() == {"beats": 4, "alarms": 0, "pending": 4, "sent": 0}
    # unsent rows stay however old they are
    assert box.prune(keep_sent_s=0, max_sent_rows=0, now=now + 10**9) == 0
    assert [p.message_id for p in box.pending(100)] == [f"d1:{i}" for i in range(6, 10)]


def test_beyond_the_row_cap_the_oldest_sent_rows_go(tmp_path: Path) -> None:
    box = _outbox(tmp_path, 10)
    box.mark_sent([f"d1:{i}" for i in range(8)])
    assert box.prune(keep_sent_s=10**9, max_sent_rows=3) == 5
    assert _sent_ids(box) == ["d1:5", "d1:6", "d1:7"]  # the newest three kept
    assert box.counts()["pending"] == 2


def test_a_pruned_key_is_forgotten_so_only_a_replay_could_add_it_again(tmp_path: Path) -> None:
    box = _outbox(tmp_path, 3)
    box.mark_sent(["d1:0"])
    box.prune(keep_sent_s=0, max_sent_rows=0, now=time.time() + 1)
    assert box.add([("beat", "d1:0", b"{}"), ("beat", "d1:1", b"{}")]) == 1


def test_the_forwarder_prunes_after_sending_at_most_once_a_minute(tmp_path: Path) -> None:
    box = _outbox(tmp_path, 5)
    forwarder = KafkaForwarder(box, KafkaTarget("localhost:1"), "d1", Retention(10**9, 2))
    box.mark_sent([f"d1:{i}" for i in range(5)])
    forwarder.prune_if_due()
    assert forwarder.pruned == 3 and len(_sent_ids(box)) == 2
    box.add([("beat", f"d1:{i}", b"{}") for i in range(5, 9)])
    box.mark_sent([f"d1:{i}" for i in range(5, 9)])
    forwarder.prune_if_due()  # not due yet
    assert len(_sent_ids(box)) == 6
