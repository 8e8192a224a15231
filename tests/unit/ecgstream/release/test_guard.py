"""The promotion guard's rule on readings: each signal's limit, the baseline, the time a
breach must hold, and signals that cannot be read."""

from __future__ import annotations

from ecgstream.release.guard import PromotionGuard, Reading
from ecgstream.release.policy import GuardPolicy, load_policy

POLICY = GuardPolicy(breach_for_s=10, p99_latency_s=2, max_error_rate=0.01,
                     alarm_rate_ratio=3, min_alarms_per_minute=2)  # fmt: skip
CALM = Reading(at=0, p99_latency_s=0.3, error_rate=0.0, alarms_per_minute=1.0,
               drift={"prediction": 0, "data": 0})  # fmt: skip


def _at(t: float, **changes: object) -> Reading:
    return Reading(**{**CALM.__dict__, "at": t, **changes})


def test_a_breach_rolls_back_only_once_it_has_held() -> None:
    guard = PromotionGuard(POLICY, CALM)
    assert guard.observe(_at(100, p99_latency_s=3.0)) is None
    assert guard.observe(_at(105, p99_latency_s=3.5)) is None
    breach = guard.observe(_at(110, p99_latency_s=4.0))
    assert breach is not None and breach.signal == "p99_latency"
    assert (breach.started_at, breach.detected_at) == (100, 110)
    assert "4.00 s > 2 s" in breach.text
    assert breach.evidence["baseline"]["p99_latency_s"] == 0.3


def test_a_blip_that_recovers_restarts_the_clock() -> None:
    guard = PromotionGuard(POLICY, CALM)
    assert guard.observe(_at(100, error_rate=0.5)) is None
    assert guard.observe(_at(105)) is None  # back within bounds
    assert guard.observe(_at(112, error_rate=0.5)) is None
    assert guard.observe(_at(121, error_rate=0.5)) is None
    assert guard.observe(_at(122, error_rate=0.5)).signal == "error_rate"


def test_the_alarm_rate_is_judged_against_the_rate_before_the_promotion() -> None:
    guard = PromotionGuard(POLICY, _at(0, alarms_per_minute=4.0))
    assert guard.violations(_at(1, alarms_per_minute=11.0)) == {}  # under 3 x 4
    assert "alarm_rate" in guard.violations(_at(1, alarms_per_minute=13.0))
    quiet = PromotionGuard(POLICY, _at(0, alarms_per_minute=0.0))
    assert quiet.violations(_at(1, alarms_per_minute=1.5)) == {}  # under the minimum of 2
    assert "at least 2" in quiet.violations(_at(1, alarms_per_minute=6.0))["alarm_rate"]


def test_drift_is_blamed_only_when_it_turns_on_after_the_promotion() -> None:
    guard = PromotionGuard(POLICY, CALM)
    assert "drift:prediction" in guard.violations(_at(1, drift={"prediction": 1}))
    assert guard.violations(_at(1, drift={"data": 1})) == {}  # not a watched kind
    already = PromotionGuard(POLICY, _at(0, drift={"prediction": 1}))
    assert already.violations(_at(1, drift={"prediction": 1})) == {}


def test_signals_without_data_are_not_breaches() -> None:
    guard = PromotionGuard(POLICY, Reading(at=0))
    empty = Reading(at=50)
    assert guard.violations(empty) == {}
    assert guard.observe(empty) is None


def test_the_shipped_policy_has_a_guard() -> None:
    guard = load_policy().guard
    assert guard.breach_for_s < guard.rollback_within_s <= guard.window_s
