"""The promotion guard's rule: is the version just promoted breaking what production promised?

Pure: it sees readings of the serving signals (from Prometheus, in `tuning/guard.py`) and the
baseline read just before the promotion, and says when a breach has held long enough to roll
back (decision 101). A signal that cannot be read (no traffic yet, a scrape missed) is not a
breach; one already bad before the promotion is not blamed on the new version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ecgstream.release.policy import GuardPolicy


@dataclass(frozen=True)
class Reading:
    at: float  # unix seconds
    p99_latency_s: float | None = None
    error_rate: float | None = None  # per chunk
    alarms_per_minute: float | None = None
    drift: Mapping[str, float] = field(default_factory=dict)  # kind -> 0 or 1


@dataclass(frozen=True)
class Breach:
    signal: str
    started_at: float
    detected_at: float
    text: str
    evidence: dict[str, Any]


class PromotionGuard:
    def __init__(self, policy: GuardPolicy, baseline: Reading) -> None:
        self._policy = policy
        self.baseline = baseline
        self._since: dict[str, float] = {}  # signal -> when its breach began

    def violations(self, reading: Reading) -> dict[str, str]:
        """Each signal out of bounds in this reading, with why."""
        p, base = self._policy, self.baseline
        out: dict[str, str] = {}
        if reading.p99_latency_s is not None and reading.p99_latency_s > p.p99_latency_s:
            out["p99_latency"] = (
                f"beat latency p99 {reading.p99_latency_s:.2f} s > {p.p99_latency_s:g} s"
            )
        if reading.error_rate is not None and reading.error_rate > p.max_error_rate:
            out["error_rate"] = f"errors {reading.error_rate:.3f} per chunk > {p.max_error_rate:g}"
        if reading.alarms_per_minute is not None:
            before = base.alarms_per_minute or 0.0
            limit = max(p.min_alarms_per_minute, p.alarm_rate_ratio * before)
            if reading.alarms_per_minute > limit:
                out["alarm_rate"] = (
                    f"clinical alarms {reading.alarms_per_minute:.1f}/min > {limit:.1f}/min "
                    f"({p.alarm_rate_ratio:g}x the {before:.1f}/min before, at least "
                    f"{p.min_alarms_per_minute:g})"
                )
        for kind in p.drift_kinds:
            if reading.drift.get(kind, 0) >= 1 and base.drift.get(kind, 0) < 1:
                out[f"drift:{kind}"] = f"{kind} drift flagged (it was not before the promotion)"
        return out

    def observe(self, reading: Reading) -> Breach | None:
        """The first breach that has held `breach_for_s`, else None."""
        found = self.violations(reading)
        for signal in list(self._since):
            if signal not in found:
                del self._since[signal]  # back within bounds: its clock restarts
        for signal, text in sorted(found.items()):
            started = self._since.setdefault(signal, reading.at)
            if reading.at - started >= self._policy.breach_for_s:
                return Breach(
                    signal,
                    started,
                    reading.at,
                    text,
                    {"reading": _plain(reading), "baseline": _plain(self.baseline)},
                )
        return None


def _plain(reading: Reading) -> dict[str, Any]:
    return {
        "at": reading.at,
        "p99_latency_s": reading.p99_latency_s,
        "error_rate": reading.error_rate,
        "alarms_per_minute": reading.alarms_per_minute,
        "drift": dict(reading.drift),
    }
