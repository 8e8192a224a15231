"""The soak verdict: flat memory passes, steady growth after the warm-up fails."""

from __future__ import annotations

from ecgstream.benchmarks.soak import summarise


def _samples(memory_at: dict[str, object], minutes: float = 10, every_s: float = 10) -> list:
    times = [i * every_s for i in range(int(minutes * 60 / every_s) + 1)]
    return [{"t_s": t, "actors": {n: f(t) for n, f in memory_at.items()}} for t in times]


def test_flat_and_leaking_actors_are_told_apart() -> None:
    samples = _samples(
        {
            "steady": lambda t: 800 + (5 if int(t) % 20 else -5),  # noise only
            "warming": lambda t: 300 + min(t, 120),  # grows during warm-up only
            "leaking": lambda t: 400 + 0.5 * t,  # +300 MB over 10 minutes
        }
    )
    result = summarise(samples, minutes=10)
    actors = result["per_actor"]
    assert actors["steady"]["flat"] is True
    assert actors["warming"]["flat"] is True
    assert actors["leaking"]["flat"] is False
    assert actors["leaking"]["slope_mb_per_h"] > 1000
    assert result["flat"] is False


def test_an_actor_seen_only_briefly_is_not_judged() -> None:
    samples = _samples({"steady": lambda t: 500.0})
    samples[-1]["actors"]["newcomer"] = 100.0
    result = summarise(samples, minutes=10)
    assert result["per_actor"]["newcomer"]["flat"] is None
    assert result["flat"] is True
