"""The release pipeline on the real stack: Ray Tune on the stack's Ray, the registry in the real
PostgreSQL, staging and shadow lanes fed through the real Kafka, promotion and rollback while
the production pipeline classifies live traffic."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
import ray
import torch

from actors.pipeline import lane_status
from ecgstream.artifact import DEFAULT_MODEL_DIR, ModelArtifact, load_artifact, save_artifact
from ecgstream.errors import ConfigurationError
from ecgstream.io.device_simulator import REPLAY_SESSION, replay
from ecgstream.model import BeatClassifier, ModelConfig
from ecgstream.release.policy import load_policy
from ecgstream.settings import Settings
from tests.integration.conftest import settings_env
from tests.integration.pipeline_support import (
    RECORDS,
    kafka_beats,
    offline_reference,
    perturbed_model,
    topic_messages,
    wait_for_beats,
)
from tuning._selection import EXPECTED_FILE, expected_predictions
from tuning.promotion import (
    promote,
    rollback,
    shadow_report,
    shadow_start,
    shadow_stop,
    with_registry,
)
from tuning.release import new_run_id, staging_step

SHIPPED_VERSION = load_artifact().version


def _cli(settings: Settings, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("ecgstream")), *args],
        env={**settings_env(settings), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _register(
    settings: Settings,
    tmp: Path,
    model: BeatClassifier,
    *,
    saved_preprocess: object | None = None,
    minutes: float = 1.0,
    mitdb: Path,
) -> str:
    """Save `model` as an artifact (with `saved_preprocess` written into it, if given) and
    register it with offline predictions computed from the in-memory model and the *correct*
    preprocessing, as selection does."""
    base = load_artifact()
    records = load_policy().splits.infravalidation
    expected = expected_predictions(
        ModelArtifact.in_memory(model, base.preprocess, "candidate"), mitdb, records, minutes
    )
    out = tmp / f"model-{uuid.uuid4().hex[:6]}"
    save_artifact(out, model, saved_preprocess or base.preprocess, base.reference, {"test": 1})
    registered = with_registry(
        settings, lambda r: r.register(out, "test", extra_files={EXPECTED_FILE: expected})
    )
    return registered.version


def _test_policy(**infravalidation: float) -> object:
    policy = load_policy()
    changes = {"minutes_per_record": 1.0, "speed": 10.0, "attempts": 1, **infravalidation}
    return policy.model_copy(
        update={"infravalidation": policy.infravalidation.model_copy(update=changes)}
    )


# -- search -----------------------------------------------------------------------------------


def test_search_stops_trials_early_and_resumes_after_a_kill(
    pipeline: Settings, tmp_path: Path
) -> None:
    name = f"itest-{uuid.uuid4().hex[:6]}"
    args = ["tune", "--samples", "4", "--epochs", "4", "--beats-per-record", "150"]
    args += ["--name", name, "--json", str(tmp_path / "tune.json")]
    experiment = pipeline.state_dir / "tune" / name
    env = {**settings_env(pipeline), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    first = subprocess.Popen(
        [str(Path(sys.executable).with_name("ecgstream")), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(experiment.glob("trial_*/checkpoint_*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    first.kill()  # interrupted after the first checkpoint
    first.wait()
    assert list(experiment.glob("trial_*/checkpoint_*"))

    second = _cli(pipeline, *args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    steps = json.loads((tmp_path / "tune.json").read_text())["steps"]
    search = steps[0]
    assert search["name"] == "search" and search["decision"] == "pass"
    assert search["metrics"]["resumed"] is True
    assert search["metrics"]["trials"] == 4
    assert search["metrics"]["stopped_early"] >= 1  # ASHA cut at least one trial short
    assert steps[1]["name"] == "selection" and steps[1]["decision"] == "pass"
    version = steps[1]["metrics"]["version"]
    found = with_registry(pipeline, lambda r: r.get(version))
    assert found is not None and found.produced_by.startswith(f"tune:{name}/")
    assert found.data_fingerprint and found.hyperparameters["model"]["window"] in (
        160,
        192,
        224,
        256,
    )
    assert {"train", "validation", "test"} <= set(found.metrics)
    assert (found.location / EXPECTED_FILE).exists()


# -- staging and infravalidation ---------------------------------------------------------------


def test_infravalidation_passes_a_faithful_candidate(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    version = _register(pipeline, tmp_path, perturbed_model(1), mitdb=mitdb_dir)
    step = staging_step(pipeline, _test_policy(), version, new_run_id(), lambda text: None)
    assert step.passed, step.reasons
    metrics = step.metrics["attempts"][0]
    assert all(c["missing"] == 0 and c["extra"] == 0 for c in metrics["predictions"].values())
    assert metrics["latency_ms"]["beats"] > 200  # 4 patients x 1 minute
    decisions = with_registry(pipeline, lambda r: r.decisions(version))
    assert [d.step for d in decisions] == ["staging"] and decisions[0].decision == "pass"
    assert lane_status(pipeline, "staging") is None  # the staging lane is gone afterwards


def test_infravalidation_fails_a_candidate_exported_with_wrong_preprocessing(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    base = load_artifact().preprocess
    broken = replace(base, beat=replace(base.beat, local_beats=2))  # both feature sets use it
    version = _register(
        pipeline, tmp_path, perturbed_model(2), saved_preprocess=broken, mitdb=mitdb_dir
    )
    step = staging_step(
        pipeline, _test_policy(attempts=2), version, new_run_id(), lambda text: None
    )
    assert not step.passed
    failed = [r for r in step.reasons if r.startswith("FAIL")]
    assert len(failed) == 1 and "probabilities equal offline" in failed[0]
    assert len(step.metrics["attempts"]) == 1  # deterministic: not retried


def test_infravalidation_fails_a_candidate_too_slow_for_the_slo(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    torch.manual_seed(3)
    slow = BeatClassifier(ModelConfig(channels=(256, 256, 256), kernel_size=63)).eval()
    version = _register(pipeline, tmp_path, slow, minutes=0.5, mitdb=mitdb_dir)
    step = staging_step(
        pipeline, _test_policy(p99_latency_ms=1000), version, new_run_id(), lambda text: None
    )
    assert not step.passed
    failed = [r for r in step.reasons if r.startswith("FAIL")]
    assert len(failed) == 1 and "p99 latency" in failed[0], step.reasons
    assert any(r.startswith("ok: probabilities equal offline") for r in step.reasons)


# -- promotion, rollback, shadow ---------------------------------------------------------------


async def _beat_versions(settings: Settings, table: str, prefix: str) -> dict:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        rows = await conn.fetch(
            f"SELECT device_id, sample_index, model_version FROM {table} "
            "WHERE device_id LIKE $1 ORDER BY device_id, sample_index",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    return {(r["device_id"], r["sample_index"]): r["model_version"] for r in rows}


async def test_promotion_and_rollback_during_live_replay_lose_and_double_nothing(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    candidate = await asyncio.to_thread(
        _register, pipeline, tmp_path, perturbed_model(4), mitdb=mitdb_dir
    )
    prefix = f"prom{uuid.uuid4().hex[:6]}"
    duration = 90
    expected = offline_reference(mitdb_dir, 3, duration, prefix)
    feeding = asyncio.create_task(
        replay(pipeline, mitdb_dir, RECORDS, 3, speed=6, duration_s=duration, prefix=prefix)
    )
    await asyncio.sleep(4)
    # no gate and no infravalidation passed: refused, unless a person says why (recorded)
    with pytest.raises(ConfigurationError, match="gate: never run; staging: never run"):
        await asyncio.to_thread(promote, pipeline, candidate)
    promoted = await asyncio.to_thread(
        lambda: promote(pipeline, candidate, override="test: the shipped model, nudged")
    )
    assert promoted["missing"] == ["gate: never run", "staging: never run"]
    assert promoted["pipeline"] == "switched"
    assert set(promoted["replicas"].values()) == {candidate}
    await asyncio.sleep(4)
    rolled = await asyncio.to_thread(rollback, pipeline)
    assert rolled == {**rolled, "rolled_back": candidate, "production": None}
    await feeding

    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=300)
    assert set(stored) == set(expected.beats)  # none lost, none doubled (primary key)
    versions = await _beat_versions(pipeline, "beats", prefix)
    assert set(versions.values()) == {SHIPPED_VERSION, candidate}
    for device in {d for d, _ in versions}:
        sequence = [v for (d, _), v in sorted(versions.items()) if d == device]
        switches = sum(a != b for a, b in itertools.pairwise(sequence))
        assert switches <= 2, f"{device}: the version flipped back and forth"
    # Kafka subscribers see the version of every beat too
    in_kafka = kafka_beats(await topic_messages(pipeline, pipeline.topics.beats), prefix)
    assert set(in_kafka) == {f"{d}:{REPLAY_SESSION}:{s}" for d, s in expected.beats}
    assert await asyncio.to_thread(with_registry, pipeline, lambda r: r.alias("production")) is None
    history = await asyncio.to_thread(with_registry, pipeline, lambda r: r.alias_history())
    assert [h["reason"] for h in history[:2]] == [
        "rollback",
        "override: test: the shipped model, nudged",
    ]
    decisions = await asyncio.to_thread(with_registry, pipeline, lambda r: r.decisions(candidate))
    assert [(d.step, d.decision) for d in decisions] == [
        ("override", "pass"),
        ("promotion", "pass"),
        ("rollback", "pass"),
    ]


def _calls_everything_v() -> BeatClassifier:
    """A deliberately bad model: the shipped one with every network's V output pushed up, so
    it calls every beat V (a PVC burden alarm on every device within a minute of signal)."""
    import copy

    from ecgstream.aami import MODEL_CLASSES

    model = copy.deepcopy(load_artifact().model)
    v = MODEL_CLASSES.index("V")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("head.3.bias"):
                parameter[v] += 50.0
    return model.eval()


async def test_a_bad_model_promoted_during_live_replay_is_rolled_back_by_the_guard(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    from ecgstream.benchmarks._reference import offline_reference as reference_of
    from ecgstream.release.policy import GuardPolicy
    from tuning.guard import guard_promotion, read_signals

    bad = await asyncio.to_thread(
        _register, pipeline, tmp_path, _calls_everything_v(), mitdb=mitdb_dir
    )
    clean = ["112", "115", "122"]  # sinus rhythm: hardly an alarm before the promotion
    prefix = f"guard{uuid.uuid4().hex[:6]}"
    duration, speed, patients = 900, 15.0, 6
    expected = reference_of(mitdb_dir, clean, patients, duration, prefix)
    feeding = asyncio.create_task(
        replay(pipeline, mitdb_dir, clean, patients, speed=speed, duration_s=duration,
               prefix=prefix)
    )  # fmt: skip
    await asyncio.sleep(20)
    baseline = await asyncio.to_thread(read_signals, pipeline)
    run_id = new_run_id()
    await asyncio.to_thread(
        lambda: promote(pipeline, bad, override="test: a deliberately bad model", run_id=run_id)
    )
    policy = GuardPolicy(window_s=60, interval_s=1, breach_for_s=3, rollback_within_s=30)
    decision = await asyncio.to_thread(guard_promotion, pipeline, bad, baseline, policy, run_id)
    assert not decision.passed, decision.reasons
    assert decision.metrics["signal"] in ("alarm_rate", "drift:prediction", "error_rate")
    assert decision.metrics["seconds_to_rollback"] <= policy.rollback_within_s
    assert decision.reasons[1].startswith("ok: rolled back to the shipped default")
    assert decision.metrics["baseline"]["at"] < decision.metrics["breach_started_at"]
    await feeding
    # production is the shipped model again, and the registry says why
    assert await asyncio.to_thread(with_registry, pipeline, lambda r: r.alias("production")) is None
    history = await asyncio.to_thread(with_registry, pipeline, lambda r: r.alias_history())
    assert history[0]["reason"].startswith("automatic: ")
    decisions = await asyncio.to_thread(with_registry, pipeline, lambda r: r.decisions(bad))
    assert [(d.step, d.decision) for d in decisions] == [
        ("override", "pass"),
        ("promotion", "pass"),
        ("rollback", "pass"),
        ("guard", "fail"),
    ]
    assert decisions[-1].metrics["signal"] == decision.metrics["signal"]
    # no beat lost or doubled across both switches, and the last beats are the shipped model's
    stored = await wait_for_beats(pipeline, prefix, len(expected.beats), timeout_s=300)
    assert set(stored) == set(expected.beats)
    versions = await _beat_versions(pipeline, "beats", prefix)
    assert set(versions.values()) == {SHIPPED_VERSION, bad}
    last = {d: v for (d, _), v in sorted(versions.items())}
    assert set(last.values()) == {SHIPPED_VERSION}
    in_kafka = kafka_beats(await topic_messages(pipeline, pipeline.topics.beats), prefix)
    assert set(in_kafka) == {f"{d}:{REPLAY_SESSION}:{s}" for d, s in expected.beats}
    assert all(len(labels) == 1 for labels in in_kafka.values())
    if os.environ.get("ECGSTREAM_RESULTS_DIR"):
        figures = {
            "load": {"records": clean, "devices": patients, "speed": speed},
            "policy": policy.model_dump(),
            "decision": {"reasons": decision.reasons, "metrics": decision.metrics},
            "beats": len(expected.beats),
            "beats_by_bad_model": sum(v == bad for v in versions.values()),
            "lost": 0,
            "doubled": 0,
        }
        path = Path(os.environ["ECGSTREAM_RESULTS_DIR"]) / "guard_rollback.json"
        path.write_text(json.dumps(figures, indent=1, default=str) + "\n")


async def test_release_promote_guards_a_sound_model_and_records_the_passed_guard(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    """The command as an operator runs it: promote, then watch; a model that behaves like the
    shipped one passes its guard window and stays in production."""
    candidate = await asyncio.to_thread(
        _register, pipeline, tmp_path, perturbed_model(7), mitdb=mitdb_dir
    )
    prefix = f"guardok{uuid.uuid4().hex[:6]}"
    feeding = asyncio.create_task(
        replay(pipeline, mitdb_dir, ["112", "115"], 2, speed=6, duration_s=150, prefix=prefix)
    )
    await asyncio.sleep(5)
    done = await asyncio.to_thread(
        _cli, pipeline, "release", "promote", candidate, "--override", "test: nudged weights",
        "--guard-window", "12",
    )  # fmt: skip
    await feeding
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "PASS guard" in done.stdout and "no breach in 12 s" in done.stdout
    assert (
        await asyncio.to_thread(with_registry, pipeline, lambda r: r.alias("production"))
        == candidate
    )
    decisions = await asyncio.to_thread(with_registry, pipeline, lambda r: r.decisions(candidate))
    assert [(d.step, d.decision) for d in decisions] == [
        ("override", "pass"),
        ("promotion", "pass"),
        ("guard", "pass"),
    ]
    assert decisions[-1].metrics["readings"] >= 2
    assert len({d.run_id for d in decisions}) == 1  # one run: promotion and its guard
    await asyncio.to_thread(rollback, pipeline)  # leave production as the other tests expect


async def test_shadow_mirrors_live_traffic_and_never_alarms(
    pipeline: Settings, mitdb_dir: Path, tmp_path: Path
) -> None:
    candidate = await asyncio.to_thread(
        _register, pipeline, tmp_path, perturbed_model(5), mitdb=mitdb_dir
    )
    await asyncio.to_thread(shadow_start, pipeline, candidate)
    try:
        prefix = f"shad{uuid.uuid4().hex[:6]}"
        expected = offline_reference(mitdb_dir, 3, 60, prefix)
        await replay(pipeline, mitdb_dir, RECORDS, 3, speed=10, duration_s=60, prefix=prefix)
        stored = await wait_for_beats(pipeline, prefix, len(expected.beats))
        assert set(stored) == set(expected.beats)
        deadline = time.monotonic() + 120
        while True:
            shadowed = await _beat_versions(pipeline, "beats_shadow", prefix)
            if len(shadowed) >= len(expected.beats) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert set(shadowed) == set(expected.beats)  # every live beat mirrored
        assert set(shadowed.values()) == {candidate}
        assert set((await _beat_versions(pipeline, "beats", prefix)).values()) == {SHIPPED_VERSION}
        status = await asyncio.to_thread(lane_status, pipeline, "shadow")
        assert sum(c["alarms"] for c in status["consumers"]) == 0
        assert sum(c["beats"] for c in status["consumers"]) >= len(expected.beats)
        in_shadow_topic = kafka_beats(
            await topic_messages(pipeline, pipeline.topics.beats_shadow), prefix
        )
        assert set(in_shadow_topic) == {f"{d}:{REPLAY_SESSION}:{s}" for d, s in expected.beats}
        report = await asyncio.to_thread(shadow_report, pipeline)
        assert report["shadow_version"] == candidate
        assert report["compared_beats"] >= len(expected.beats)
        assert report["agreement"] > 0.99  # the same model, nudged
    finally:
        stopped = await asyncio.to_thread(shadow_stop, pipeline)
    assert stopped["stopped"] == candidate
    assert await asyncio.to_thread(lane_status, pipeline, "shadow") is None


# -- the one command ---------------------------------------------------------------------------


def test_release_run_ends_in_a_recorded_gate_decision_on_cross_validated_evidence(
    pipeline: Settings, tmp_path: Path
) -> None:
    """A small search (2 trials, 2 epochs, 150 beats per record) cannot match the shipped
    recipe's cross-validated figures, so the run ends, deterministically, in a recorded gate
    refusal: the candidate cross-validated on the shipped model's own folds, 22 patients
    compared one by one, production unchanged."""
    out = tmp_path / "release.json"
    args = ["release", "run", "--samples", "2", "--epochs", "2", "--beats-per-record", "150"]
    result = _cli(pipeline, *args, "--json", str(out))
    report = json.loads(out.read_text())
    assert [s["name"] for s in report["steps"]] == ["search", "selection", "gate"]
    assert [s["decision"] for s in report["steps"]] == ["pass", "pass", "fail"]
    assert result.returncode == 1 and report["promoted"] is None
    gate = report["steps"][-1]
    # judged against what serves: the shipped model, registered as the production version
    assert gate["metrics"]["production_version"] == SHIPPED_VERSION
    assert gate["metrics"]["evidence"] == "crossval"
    assert gate["metrics"]["bootstrap"]["patients"] == 22
    shipped_card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    shipped_cv = shipped_card["metrics"]["crossval"]
    assert gate["metrics"]["production"]["macro_f1"] == shipped_cv["macro_f1"]
    assert gate["metrics"]["candidate"]["macro_f1"] < shipped_cv["macro_f1"] - 0.01
    assert gate["reasons"][0].startswith("FAIL: cross-validated macro-F1")
    assert any(r.startswith(("ok: holdout", "FAIL: holdout")) for r in gate["reasons"])
    # the registry holds the decision and the candidate's evidence, on the shipped folds
    decisions = with_registry(pipeline, lambda r: r.decisions(report["candidate"]))
    assert [(d.step, d.decision) for d in decisions] == [("selection", "pass"), ("gate", "fail")]
    assert all(d.run_id == report["run_id"] for d in decisions)
    version = with_registry(pipeline, lambda r: r.get(report["candidate"]))
    evidence = version.metrics["crossval"]
    assert sorted(map(sorted, (f["records"] for f in evidence["folds"]))) == sorted(
        map(sorted, shipped_cv["folds"])
    )
    assert len(evidence["records"]) == 22 and evidence["budget"]["beats_per_record"] == 150
    assert with_registry(pipeline, lambda r: r.alias("production")) == SHIPPED_VERSION


@pytest.fixture(autouse=True)
def _ray_connected(pipeline: Settings) -> None:
    assert ray.is_initialized()
