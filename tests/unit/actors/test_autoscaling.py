"""The pool's scaling decisions on lag in seconds of input: thresholds, sustained times,
cooldown, the hold band between the thresholds, bounds, skew, and unknown lags."""

from __future__ import annotations

import pytest

from actors._autoscaling import PoolAutoscaler
from ecgstream.settings import ScalingSettings

POLICY = ScalingSettings(
    autoscale=True,
    min_consumers=1,
    max_consumers=3,
    scale_out_lag_s=10,
    scale_in_lag_s=2,
    scale_out_after_s=6,
    scale_in_after_s=20,
    cooldown_s=30,
    skew_ratio=2,
)


def _run(scaler: PoolAutoscaler, pool: int, lags: dict, start: float, end: float, step=2.0):
    """Feed the same lags every `step` seconds; returns [(time, decision)] of the changes."""
    out, t = [], start
    while t <= end:
        decision = scaler.decide(t, pool, lags)
        if decision is not None:
            out.append((t, decision))
            pool = decision.size
        t += step
    return out


def test_sustained_lag_scales_out_one_step_at_a_time_with_a_cooldown_up_to_the_max() -> None:
    scaler = PoolAutoscaler(POLICY, partitions=8)
    changes = _run(scaler, 1, {"c0": 25.0}, 0, 120)
    assert [(t, d.action, d.size) for t, d in changes] == [(6, "scale", 2), (36, "scale", 3)]
    assert "lag 25.0 s > 10 s" in changes[0][1].reason
    assert scaler.worst_lag_s == 25.0


def test_a_short_burst_does_not_scale_and_the_band_between_thresholds_holds() -> None:
    scaler = PoolAutoscaler(POLICY, partitions=8)
    assert scaler.decide(0, 1, {"c0": 30.0}) is None
    assert scaler.decide(4, 1, {"c0": 5.0}) is None  # in the band: the clock restarts
    assert scaler.decide(8, 1, {"c0": 30.0}) is None
    assert scaler.decide(12, 1, {"c0": 30.0}) is None  # only 4 s above so far
    assert scaler.decide(14, 1, {"c0": 30.0}).size == 2
    # 5 s of lag sits between 2 and 10: never a change, however long
    assert _run(PoolAutoscaler(POLICY, 8), 2, {"a": 5.0, "b": 5.0}, 0, 600) == []


def test_low_lag_sustained_scales_in_down_to_the_min_and_not_below() -> None:
    scaler = PoolAutoscaler(POLICY, partitions=8)
    changes = _run(scaler, 3, {"a": 0.1, "b": 0.0, "c": 0.5}, 0, 200)
    assert [(t, d.size) for t, d in changes] == [(20, 2), (50, 1)]
    assert all("< 2 s" in d.reason for _, d in changes)


def test_the_pool_is_held_within_its_bounds_and_never_above_the_partitions() -> None:
    assert PoolAutoscaler(POLICY, partitions=8).decide(0, 5, {}).size == 3
    assert PoolAutoscaler(POLICY, partitions=2).decide(0, 3, {"a": 50.0}).size == 2
    capped = PoolAutoscaler(POLICY, partitions=2)
    assert _run(capped, 2, {"a": 50.0, "b": 50.0}, 0, 200) == []


def test_unknown_lag_while_a_look_back_is_re_read_does_not_count() -> None:
    scaler = PoolAutoscaler(POLICY, partitions=8)
    assert _run(scaler, 2, {"a": None, "b": None}, 0, 100) == []
    # one known consumer decides alone
    assert _run(scaler, 2, {"a": None, "b": 40.0}, 0, 10)[0][1].size == 3


def test_skewed_lag_rebalances_without_changing_the_pool() -> None:
    scaler = PoolAutoscaler(POLICY, partitions=8)
    changes = _run(scaler, 2, {"a": 8.0, "b": 0.5}, 0, 40)
    assert [(t, d.action, d.size) for t, d in changes] == [
        (6, "rebalance", 2),
        (36, "rebalance", 2),
    ]
    assert "skew" in changes[0][1].reason
    # an even pool is not rebalanced
    assert _run(PoolAutoscaler(POLICY, 8), 2, {"a": 8.0, "b": 7.0}, 0, 100) == []


def test_a_change_elsewhere_restarts_the_cooldown() -> None:
    scaler = PoolAutoscaler(POLICY, partitions=8)
    scaler.changed(0)  # e.g. a consumer was lost and the pool rebalanced
    assert _run(scaler, 1, {"a": 25.0}, 0, 30)[0][0] == 30


def test_thresholds_must_leave_a_band() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        ScalingSettings(scale_out_lag_s=2, scale_in_lag_s=2)
    with pytest.raises(ValueError, match="min_consumers"):
        ScalingSettings(min_consumers=5, max_consumers=2)
