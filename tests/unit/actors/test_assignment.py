from __future__ import annotations

from actors._assignment import balance


def test_every_partition_has_exactly_one_owner() -> None:
    target = balance(range(8), ["a", "b", "c"], {})
    owned = sorted(p for ps in target.values() for p in ps)
    assert owned == list(range(8))
    assert sorted(len(ps) for ps in target.values()) == [2, 3, 3]


def test_heavy_partitions_are_spread() -> None:
    target = balance(range(4), ["a", "b"], {0: 1000, 1: 1000, 2: 0, 3: 0})
    assert {tuple(ps) for ps in target.values()} == {(0, 2), (1, 3)} or {
        tuple(ps) for ps in target.values()
    } == {(0, 3), (1, 2)}


def test_a_lost_consumer_s_partitions_move_and_the_others_stay() -> None:
    before = {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}
    after = balance(range(8), ["a", "c"], {}, current={"a": [0, 1, 2], "c": [6, 7]})
    assert set(before["a"]) <= set(after["a"])
    assert set(before["c"]) <= set(after["c"])
    assert sorted(after["a"] + after["c"]) == list(range(8))


def test_a_new_consumer_gets_a_share() -> None:
    after = balance(range(8), ["a", "b", "c"], {}, current={"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]})
    assert len(after["c"]) >= 2
    assert sorted(p for ps in after.values() for p in ps) == list(range(8))


def test_no_consumers() -> None:
    assert balance(range(4), [], {}) == {}
