"""Partition assignment by load: a pure function, so it is tested without Ray or Kafka."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def balance(
    partitions: Sequence[int],
    consumers: Sequence[str],
    lag: Mapping[int, int],
    current: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, list[int]]:
    """Spread partitions over consumers so each carries a similar load.

    Load of a partition = 1 + its lag in messages (so idle partitions still spread by count).
    Partitions keep their current owner while that owner is not overloaded, because every move
    costs a state rebuild; the rest go, heaviest first, to the least-loaded consumer.
    """
    if not consumers:
        return {}
    current = current or {}
    weight = {p: 1 + max(0, lag.get(p, 0)) for p in partitions}
    fair = sum(weight.values()) / len(consumers)
    target: dict[str, list[int]] = {c: [] for c in consumers}
    load = dict.fromkeys(consumers, 0)
    placed: set[int] = set()
    # keep current ownership up to a fair share (+ one partition of slack)
    for consumer in consumers:
        for p in sorted(current.get(consumer, []), key=lambda p: -weight.get(p, 1)):
            if (
                p in weight
                and p not in placed
                and load[consumer] + weight[p] <= fair + max(weight.values(), default=1)
                and len(target[consumer]) < -(-len(partitions) // len(consumers))
            ):
                target[consumer].append(p)
                load[consumer] += weight[p]
                placed.add(p)
    for p in sorted((p for p in partitions if p not in placed), key=lambda p: (-weight[p], p)):
        consumer = min(consumers, key=lambda c: (load[c], len(target[c]), c))
        target[consumer].append(p)
        load[consumer] += weight[p]
    return {c: sorted(ps) for c, ps in target.items()}
