"""Infravalidation: the candidate, deployed as the staging Serve application beside production,
serves a replay of the infravalidation patients through the real path (Kafka -> staging consumer
actors -> its Serve app -> `beats_staging`), and must

- load (deploy and become ready) within the limit,
- reproduce the offline predictions recorded at selection: the same beats, and probabilities
  within the stated tolerance,
- keep p99 latency (device send -> classified) under the SLO,
- show no errors (classification retries, dead letters, a degraded pool),
- keep the replica's peak memory within budget.

Operational failures (load, latency, errors, missing beats) are retried as the policy says;
different predictions are deterministic and are not.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from ecgstream.io.device_simulator import replay
from ecgstream.release.policy import InfravalidationPolicy
from ecgstream.release.report import StepDecision
from ecgstream.settings import Settings

TAIL_S = 6.0  # beats this close to a replay's end may still wait for data (detection delay)
DRAIN_TIMEOUT_S = 180.0  # after the replay, how long to wait for the last beats


@dataclass(frozen=True)
class ExpectedRecord:
    samples: np.ndarray
    probabilities: np.ndarray
    n_samples: int
    fs: float

    @property
    def cutoff(self) -> int:
        return self.n_samples - round(TAIL_S * self.fs)


def read_expected(data: bytes) -> tuple[dict[str, ExpectedRecord], float]:
    """The offline predictions written at selection, and the minutes per record they cover."""
    with np.load(io.BytesIO(data)) as npz:
        meta = json.loads(str(npz["meta"]))
        records = {
            name: ExpectedRecord(
                samples=npz[f"{name}/samples"],
                probabilities=npz[f"{name}/probabilities"],
                n_samples=int(npz[f"{name}/n_samples"]),
                fs=float(npz[f"{name}/fs"]),
            )
            for name in meta["records"]
        }
    return records, float(meta["minutes"])


def compare_predictions(
    expected: ExpectedRecord, served_samples: np.ndarray, served_proba: np.ndarray, tolerance: float
) -> dict[str, Any]:
    """One record: are the served beats the offline beats, with the same probabilities?"""
    keep_expected = expected.samples < expected.cutoff
    keep_served = served_samples < expected.cutoff
    want = dict(
        zip(
            expected.samples[keep_expected].tolist(),
            expected.probabilities[keep_expected],
            strict=True,
        )
    )
    got = dict(zip(served_samples[keep_served].tolist(), served_proba[keep_served], strict=True))
    common = sorted(want.keys() & got.keys())
    if common:
        a = np.stack([want[s] for s in common])
        b = np.stack([got[s] for s in common])
        max_diff = float(np.abs(a - b).max())
        label_changes = int((a.argmax(axis=1) != b.argmax(axis=1)).sum())
    else:
        max_diff, label_changes = 0.0, 0
    return {
        "expected_beats": len(want),
        "served_beats": len(got),
        "missing": len(want.keys() - got.keys()),
        "extra": len(got.keys() - want.keys()),
        "max_probability_diff": max_diff,
        "label_changes": label_changes,
        "within_tolerance": max_diff <= tolerance,
    }


async def _served_rows(
    settings: Settings, version: str, prefix: str
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        rows = await conn.fetch(
            """SELECT device_id, sample_index, probabilities, latency_ms FROM beats_staging
               WHERE model_version = $1 AND device_id LIKE $2 ORDER BY device_id, sample_index""",
            version,
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    by_device: dict[str, list] = {}
    for row in rows:
        by_device.setdefault(row["device_id"], []).append(row)
    return {
        device: (
            np.array([r["sample_index"] for r in found], dtype=np.int64),
            np.array([r["probabilities"] for r in found], dtype=np.float32),
            np.array([r["latency_ms"] for r in found], dtype=np.float64),
        )
        for device, found in by_device.items()
    }


def infravalidate(
    settings: Settings,
    version: str,
    model_dir: Path,
    expected_data: bytes,
    policy: InfravalidationPolicy,
    data_dir: Path,
    on_progress: Callable[[str], None] = lambda text: None,
) -> StepDecision:
    """Attempts until one passes, a deterministic failure, or the policy's attempts run out."""
    attempts: list[dict[str, Any]] = []
    decision = StepDecision("infravalidation", False, ["not run"])
    for attempt in range(1, policy.attempts + 1):
        on_progress(f"attempt {attempt} of {policy.attempts}")
        decision, deterministic = _attempt(
            settings, version, model_dir, expected_data, policy, data_dir, on_progress
        )
        attempts.append({"attempt": attempt, "passed": decision.passed, **decision.metrics})
        if decision.passed or deterministic:
            break
    reasons = list(decision.reasons)
    if len(attempts) > 1:
        reasons.append(f"{len(attempts)} attempts (the policy allows {policy.attempts})")
    return StepDecision("infravalidation", decision.passed, reasons, {"attempts": attempts})


def _attempt(
    settings: Settings,
    version: str,
    model_dir: Path,
    expected_data: bytes,
    policy: InfravalidationPolicy,
    data_dir: Path,
    on_progress: Callable[[str], None],
) -> tuple[StepDecision, bool]:
    from ray import serve

    from actors.pipeline import lane_down, lane_status, lane_up
    from ecgstream.lanes import lane

    expected, minutes = read_expected(expected_data)
    records = list(expected)
    prefix = f"iv{uuid.uuid4().hex[:8]}"  # this attempt's devices: never mixed with another's
    reasons: list[str] = []
    metrics: dict[str, Any] = {"records": records, "minutes_per_record": minutes}
    ok = True

    def check(passed: bool, text: str) -> None:
        nonlocal ok
        ok = ok and passed
        reasons.append(f"{'ok' if passed else 'FAIL'}: {text}")

    try:
        on_progress("deploying the staging application")
        try:
            status = lane_up(settings, "staging", str(model_dir), consumers=1)
        except Exception as exc:
            check(False, f"staging deployment failed: {exc}"[:500])
            return StepDecision("infravalidation", False, reasons, metrics), False
        running = [c for c in status["consumers"] if "error" not in c]
        if not running:
            check(False, f"no staging consumer could start: {status['events'][-3:]}")
            return StepDecision("infravalidation", False, reasons, metrics), False
        load_s = float(status["load_s"])
        metrics["load_s"] = round(load_s, 2)
        check(
            load_s <= policy.load_timeout_s,
            f"loaded in {load_s:.1f} s, limit {policy.load_timeout_s:.0f} s",
        )
        on_progress(f"replaying {len(records)} patients x {minutes:g} min at {policy.speed:g}x")
        stats = asyncio.run(
            replay(
                settings,
                data_dir,
                records,
                patients=len(records),
                speed=policy.speed,
                duration_s=minutes * 60,
                prefix=prefix,
                topic=lane("staging", settings.topics).samples_topic,
            )
        )
        devices = {d.device_id: d.record for d in stats.devices}
        on_progress("waiting for the staging results")
        served = _wait_for_beats(settings, version, prefix, devices, expected)
        metrics["replay_s"] = round(stats.seconds, 1)

        comparisons = {}
        latencies = []
        for device, record in devices.items():
            samples, proba, latency = served.get(
                device, (np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0))
            )
            comparisons[record] = compare_predictions(
                expected[record], samples, proba, policy.probability_tolerance
            )
            latencies.append(latency)
        metrics["predictions"] = comparisons
        missing = sum(c["missing"] for c in comparisons.values())
        extra = sum(c["extra"] for c in comparisons.values())
        total = sum(c["expected_beats"] for c in comparisons.values())
        max_diff = max((c["max_probability_diff"] for c in comparisons.values()), default=0.0)
        changes = sum(c["label_changes"] for c in comparisons.values())
        same_beats = missing == 0 and extra == 0
        check(
            same_beats,
            f"served beats = offline beats: {total - missing} of {total} found, "
            f"{missing} missing, {extra} extra",
        )
        predictions_equal = max_diff <= policy.probability_tolerance
        check(
            predictions_equal,
            f"probabilities equal offline: max difference {max_diff:.2e} "
            f"(tolerance {policy.probability_tolerance:.0e}), {changes} labels changed",
        )
        all_latency = np.concatenate(latencies) if latencies else np.zeros(0)
        p99 = float(np.percentile(all_latency, 99)) if all_latency.size else float("inf")
        metrics["latency_ms"] = {
            "p50": round(float(np.percentile(all_latency, 50)), 1) if all_latency.size else None,
            "p99": round(p99, 1),
            "beats": int(all_latency.size),
        }
        check(
            p99 <= policy.p99_latency_ms,
            f"p99 latency {p99:.0f} ms, SLO {policy.p99_latency_ms:.0f} ms",
        )

        pool = lane_status(settings, "staging") or {"consumers": []}
        errors = {
            "retries": sum(int(c.get("retries", 0)) for c in pool["consumers"]),
            "dead_letters": sum(int(c.get("dead_letters", 0)) for c in pool["consumers"]),
            "failed_consumers": sum("error" in c for c in pool["consumers"]),
        }
        metrics["errors"] = errors
        check(not any(errors.values()), f"errors: {errors}")
        handle = serve.get_app_handle(lane("staging").serve_app)
        rss = float(handle.rss_mb.remote().result(timeout_s=30))
        metrics["replica_peak_rss_mb"] = round(rss, 1)
        check(
            rss <= policy.max_replica_rss_mb,
            f"replica peak memory {rss:.0f} MB, budget {policy.max_replica_rss_mb:.0f} MB",
        )
        # a prediction mismatch is a property of the candidate: another attempt cannot fix it
        deterministic = same_beats and not predictions_equal
        return StepDecision("infravalidation", ok, reasons, metrics), deterministic
    finally:
        on_progress("removing the staging application")
        lane_down(settings, "staging")


def _wait_for_beats(
    settings: Settings,
    version: str,
    prefix: str,
    devices: dict[str, str],
    expected: dict[str, ExpectedRecord],
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Poll `beats_staging` until every device has its expected beats (or the time is up)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        served = asyncio.run(_served_rows(settings, version, prefix))
        done = all(
            int((served.get(d, (np.zeros(0),))[0] < expected[r].cutoff).sum())
            >= int((expected[r].samples < expected[r].cutoff).sum())
            for d, r in devices.items()
        )
        if done or time.monotonic() > deadline:
            return served
        time.sleep(1.0)
