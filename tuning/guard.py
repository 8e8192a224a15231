"""The promotion guard at run time: read the serving signals from Prometheus, apply the pure
rule (`ecgstream/release/guard.py`), and roll production back on a breach (decision 101).

The signals are the pipeline's own metrics, as the monitor exports them and Prometheus scrapes
them: beat latency p99, retried steps and dead letters per chunk, clinical alarms per minute
and the drift flags. After a promotion every beat is the new version's, so the aggregate is
that version's (the first seconds still hold the old one's, which only delays a breach).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from ecgstream.release.guard import PromotionGuard, Reading
from ecgstream.release.policy import GuardPolicy
from ecgstream.release.report import StepDecision
from ecgstream.settings import Settings

QUERIES = {
    "p99_latency_s": "histogram_quantile(0.99, sum by (le) "
    "(rate(ecgstream_beat_latency_seconds_bucket[30s])))",
    "error_rate": "((sum(rate(ecgstream_consumer_retries_total[30s])) or vector(0)) + "
    "(sum(rate(ecgstream_dead_letters_total[30s])) or vector(0))) / "
    "sum(rate(ecgstream_chunks_total[30s]))",
    "alarms_per_minute": 'sum(rate(ecgstream_alarms_total{category="clinical"}[1m])) * 60',
}
DRIFT_QUERY = "max by (kind) (ecgstream_drift_detected)"


def _query(settings: Settings, expr: str) -> list[dict[str, Any]]:
    url = f"{settings.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused a query: {body.get('error', body)}")
    return list(body["data"]["result"])


def _scalar(result: list[dict[str, Any]]) -> float | None:
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) or math.isinf(value) else value


def read_signals(settings: Settings) -> Reading:
    """The serving signals now; a signal Prometheus has no data for is None."""
    values = {name: _scalar(_query(settings, expr)) for name, expr in QUERIES.items()}
    drift = {
        r["metric"].get("kind", ""): float(r["value"][1]) for r in _query(settings, DRIFT_QUERY)
    }
    return Reading(at=time.time(), drift=drift, **values)


def guard_promotion(
    settings: Settings,
    version: str,
    baseline: Reading,
    policy: GuardPolicy,
    run_id: str,
    *,
    window_s: float | None = None,
    progress: Callable[[str], None] = lambda text: None,
    read: Callable[[], Reading] | None = None,
) -> StepDecision:
    """Watch production after `version` was promoted; on a breach, roll back and record it.
    The returned decision (`guard`) is also stored in the registry."""
    from tuning.promotion import rollback, with_registry

    read = read or (lambda: read_signals(settings))
    guard = PromotionGuard(policy, baseline)
    window = policy.window_s if window_s is None else window_s
    deadline = time.time() + window
    readings = 0
    decision: StepDecision | None = None
    while time.time() < deadline:
        try:
            reading = read()
        except Exception as exc:  # Prometheus away: no reading is no evidence either way
            progress(f"guard: no reading ({type(exc).__name__})")
            time.sleep(policy.interval_s)
            continue
        readings += 1
        breach = guard.observe(reading)
        if breach is not None:
            progress(f"guard: {breach.text}; rolling back")
            outcome = rollback(settings, reason=f"automatic: {breach.text}", run_id=run_id)
            done = time.time()
            took = done - breach.started_at
            in_time = took <= policy.rollback_within_s
            decision = StepDecision(
                "guard",
                False,
                [
                    f"FAIL: {breach.text}, for {breach.detected_at - breach.started_at:.0f} s",
                    f"{'ok' if in_time else 'FAIL'}: rolled back to "
                    f"{outcome['production'] or 'the shipped default'} {took:.1f} s after the "
                    f"breach began (required within {policy.rollback_within_s:g} s)",
                ],
                {
                    "signal": breach.signal,
                    "breach_started_at": breach.started_at,
                    "detected_at": breach.detected_at,
                    "rolled_back_at": done,
                    "seconds_to_rollback": round(took, 2),
                    "rolled_back_to": outcome["production"],
                    "readings": readings,
                    **breach.evidence,
                },
            )
            break
        time.sleep(policy.interval_s)
    if decision is None:
        decision = StepDecision(
            "guard",
            True,
            [f"ok: no breach in {window:.0f} s ({readings} readings)"],
            {"readings": readings, "baseline": baseline.__dict__ | {"drift": dict(baseline.drift)}},
        )
    result = decision
    with_registry(
        settings,
        lambda r: r.record_decision(
            run_id, version, result.name, result.passed, result.reasons, result.metrics
        ),
    )
    return decision
