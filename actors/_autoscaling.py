"""When the consumer pool grows, shrinks or rebalances: a pure decision over the consumers'
lag in seconds of input, so it is tested without Ray or Kafka (decision 100).

Hysteresis, three ways: the pool grows only above `scale_out_lag_s` and shrinks only below
`scale_in_lag_s` (nothing changes in between); either must hold for a sustained time; and no
change follows another within `cooldown_s`, because every change moves partitions whose new
owners first re-read their look-back. A consumer whose lag is unknown (it is rebuilding a
partition it was just given) does not count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ecgstream.settings import ScalingSettings


@dataclass(frozen=True)
class ScalingDecision:
    action: str  # "scale" | "rebalance"
    size: int  # the pool size after the decision
    reason: str


class PoolAutoscaler:
    def __init__(self, policy: ScalingSettings, partitions: int) -> None:
        self._policy = policy
        self._ceiling = max(1, min(policy.max_consumers, partitions))
        self._floor = min(policy.min_consumers, self._ceiling)
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._skew_since: float | None = None
        self._changed_at = float("-inf")
        self.worst_lag_s = 0.0

    def changed(self, now: float) -> None:
        """The pool or its assignment changed (here or elsewhere): the cooldown starts."""
        self._changed_at = now
        self._above_since = self._below_since = self._skew_since = None

    def decide(
        self, now: float, pool: int, lag_s: Mapping[str, float | None]
    ) -> ScalingDecision | None:
        """`lag_s`: each consumer's lag (its most-behind partition), None while unknown."""
        p = self._policy
        if pool < self._floor or pool > self._ceiling:
            size = min(max(pool, self._floor), self._ceiling)
            return self._change(
                now, "scale", size, f"pool {pool} outside {self._floor}..{self._ceiling}"
            )
        known = [v for v in lag_s.values() if v is not None]
        if not known:
            return None
        worst = self.worst_lag_s = max(known)
        cooling = now - self._changed_at < p.cooldown_s
        if worst > p.scale_out_lag_s:
            self._below_since = None
            self._above_since = self._above_since if self._above_since is not None else now
            held = now - self._above_since
            if held >= p.scale_out_after_s and not cooling and pool < self._ceiling:
                return self._change(
                    now,
                    "scale",
                    pool + 1,
                    f"lag {worst:.1f} s > {p.scale_out_lag_s:g} s for {held:.0f} s",
                )
        elif worst < p.scale_in_lag_s:
            self._above_since = None
            self._below_since = self._below_since if self._below_since is not None else now
            held = now - self._below_since
            if held >= p.scale_in_after_s and not cooling and pool > self._floor:
                return self._change(
                    now,
                    "scale",
                    pool - 1,
                    f"lag {worst:.1f} s < {p.scale_in_lag_s:g} s for {held:.0f} s",
                )
        else:  # the band between the thresholds: hold
            self._above_since = self._below_since = None
        # skew: the most-behind consumer against the mean of the others
        others = sorted(known)[:-1]
        mean = sum(others) / len(others) if others else worst
        skewed = bool(others) and worst > p.scale_in_lag_s and worst > p.skew_ratio * mean
        if not skewed:
            self._skew_since = None
            return None
        self._skew_since = self._skew_since if self._skew_since is not None else now
        held = now - self._skew_since
        if held >= p.scale_out_after_s and not cooling:
            return self._change(
                now,
                "rebalance",
                pool,
                f"lag skew: {worst:.1f} s against the others' {mean:.1f} s for {held:.0f} s",
            )
        return None

    def _change(self, now: float, action: str, size: int, reason: str) -> ScalingDecision:
        self.changed(now)
        return ScalingDecision(action, size, reason)
