"""`ecgstream release run`: search -> selection -> holdout gate -> staging -> promotion.

Each step decides pass or fail with its reasons; the first failure ends the run (nothing later
runs, nothing is promoted). Every decision is stored in the registry, so a version's history
says why it was, or was not, released.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecgstream.artifact import DEFAULT_MODEL_DIR, ModelArtifact, load_artifact
from ecgstream.evaluation import evaluate_records
from ecgstream.io.registry import ModelVersion, Registry
from ecgstream.release.gate import crossval_gate
from ecgstream.release.policy import ReleasePolicy
from ecgstream.release.report import ReleaseReport, StepDecision
from ecgstream.settings import Settings
from ecgstream.splits import DS1, PACED, patient_folds
from ecgstream.stream import PreprocessConfig
from ecgstream.training import TrainConfig
from tuning._search import SearchOutcome, load_search_data, run_search
from tuning._selection import (
    EXPECTED_FILE,
    expected_predictions,
    select_on_test,
    write_candidate,
)
from tuning.promotion import promote, with_registry

Progress = Callable[[str], None]
SHIPPED_PRODUCER = "shipped default (models/default)"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass(frozen=True)
class TuneResult:
    search: SearchOutcome
    version: ModelVersion
    decisions: list[StepDecision]


def tune_and_register(
    settings: Settings,
    policy: ReleasePolicy,
    run_id: str,
    *,
    name: str | None = None,
    resume: bool = True,
    progress: Progress = lambda text: None,
    verbose: int = 1,
) -> TuneResult | list[StepDecision]:
    """Search and selection; the selected model is registered with its lineage and the
    offline predictions infravalidation will compare serving with. Returns the failed step's
    decisions when there is nothing to register."""
    from actors.pipeline import connect

    data_dir = settings.records_dir
    preprocess = PreprocessConfig()
    name = name or f"search-{run_id}"
    progress(f"loading the search data ({len(policy.splits.train)} train patients)")
    data = load_search_data(
        data_dir, policy.splits, preprocess, policy.search.beats_per_record, policy.search.seed
    )
    connect(settings)
    progress(f"searching: {policy.search.samples} trials, up to {policy.search.max_epochs} epochs")
    search = run_search(
        data, policy.search, settings.state_dir / "tune", name, resume=resume, verbose=verbose
    )
    summary = search.summary()
    searched = StepDecision(
        "search",
        bool(search.best(1)),
        [
            f"{summary['trials']} trials ({summary['stopped_early']} stopped early by ASHA), "
            f"best validation macro-F1 {summary['best_val_macro_f1'] or 0:.3f} "
            f"on patients {', '.join(policy.splits.validation)}"
            + (" (resumed)" if search.resumed else "")
        ],
        summary,
    )
    _record(settings, run_id, None, searched)
    if not searched.passed:
        return [searched]

    progress(f"selecting among the best {policy.search.top_k} trials on the test patients")
    selection = select_on_test(search, policy, data_dir, preprocess, on_trial=progress)
    progress("recording the offline predictions for infravalidation")
    expected = expected_predictions(
        ModelArtifact.in_memory(selection.model, preprocess, "candidate"),
        data_dir,
        policy.splits.infravalidation,
        policy.infravalidation.minutes_per_record,
    )
    with tempfile.TemporaryDirectory(prefix="ecgstream-candidate-") as tmp:
        write_candidate(
            selection,
            data,
            policy,
            data_dir,
            preprocess,
            Path(tmp) / "model",
            search.experiment.name,
        )
        version = with_registry(
            settings,
            lambda r: r.register(
                Path(tmp) / "model",
                produced_by=f"tune:{search.experiment.name}/{selection.trial.trial_id}",
                extra_files={EXPECTED_FILE: expected},
            ),
        )
    selected = StepDecision(
        "selection",
        True,
        [
            f"trial {selection.trial.trial_id}: test macro-F1 {selection.test['macro_f1']:.3f} "
            f"on patients {', '.join(policy.splits.test)} (best of {len(selection.ranking)})",
            f"registered as {version.version}",
        ],
        {"ranking": selection.ranking, "test": selection.test, "version": version.version},
    )
    _record(settings, run_id, version.version, selected)
    return TuneResult(search, version, [searched, selected])


def _recorded_evidence(version: ModelVersion) -> dict[str, Any] | None:
    """A version's cross-validated evidence per patient, if it has any (its card's, or what an
    earlier gate measured)."""
    evidence = version.metrics.get("crossval")
    if not isinstance(evidence, dict) or not evidence.get("records"):
        return None
    if any(entry.get("confusion") is None for entry in evidence["records"].values()):
        return None
    return evidence


def _fold_records(evidence: dict[str, Any]) -> list[tuple[str, ...]]:
    return [tuple(f["records"] if isinstance(f, dict) else f) for f in evidence["folds"]]


def crossval_evidence(
    settings: Settings,
    policy: ReleasePolicy,
    version: ModelVersion,
    artifact_dir: Path,
    folds: Sequence[Sequence[str]],
    progress: Progress,
) -> dict[str, Any]:
    """Cross-validate the training config a version's card recorded on the given patient
    folds, with the policy's training budget (`search.beats_per_record`): every patient is
    scored, through the streaming path, by a model trained without it."""
    from ecgstream.evidence import crossval_report
    from ecgstream.trainer import cross_validate

    config = TrainConfig.from_dict(version.hyperparameters)
    outcome = cross_validate(
        settings.records_dir,
        [r for fold in folds for r in fold],
        len(folds),
        config,
        held_out_folds=folds,
        beats_per_record=policy.search.beats_per_record,
        preprocess=load_artifact(artifact_dir).preprocess,
        on_fold=lambda fold, held_out: progress(
            f"cross-validating {version.version}: fold {fold + 1}/{len(folds)} "
            f"(held out {', '.join(held_out)})"
        ),
    )
    report = crossval_report([[r.score for r in fold] for fold in outcome.folds], outcome.notes)
    report["budget"] = {"beats_per_record": policy.search.beats_per_record}
    return report


def gate_step(
    settings: Settings, policy: ReleasePolicy, version: str, run_id: str, progress: Progress
) -> StepDecision:
    """The gate against the version serving production (decision 99). Before the first
    promotion that is the shipped default model: it is registered as such and becomes the
    production alias, so the first release is compared with what patients are monitored by.
    The comparison is on cross-validated evidence: production's recorded one (else measured
    now) and the candidate's, measured on the same patient folds; the candidate artifact
    must also hold the absolute floors on the holdout patients."""
    data_dir = settings.records_dir

    async def models(registry: Registry) -> tuple[ModelVersion, Path, ModelVersion, Path]:
        production = await registry.alias("production")
        if production is None:
            shipped = await registry.register(DEFAULT_MODEL_DIR, produced_by=SHIPPED_PRODUCER)
            await registry.set_alias("production", shipped.version, "shipped default, serving")
            production = shipped.version

        async def known(name: str) -> ModelVersion:
            found = await registry.get(name)
            if found is None:
                raise LookupError(f"model version {name} is not registered")
            return found

        return (
            await known(version),
            await registry.artifact_dir(version),
            await known(production),
            await registry.artifact_dir(production),
        )

    candidate, candidate_dir, production, production_dir = with_registry(settings, models)
    theirs = _recorded_evidence(production)
    if theirs is None:
        folds = patient_folds([r for r in DS1 if r not in PACED], 5, seed=0)
        progress(f"production {production.version} has no per-patient evidence: measuring it")
        theirs = crossval_evidence(settings, policy, production, production_dir, folds, progress)
        evidence = theirs
        with_registry(settings, lambda r: r.add_metrics(production.version, "crossval", evidence))
    mine = crossval_evidence(
        settings, policy, candidate, candidate_dir, _fold_records(theirs), progress
    )
    with_registry(settings, lambda r: r.add_metrics(version, "crossval", mine))
    holdout = policy.splits.holdout
    progress(f"scoring {version} on the holdout patients {', '.join(holdout)}")
    scores = [r.score for r in evaluate_records(load_artifact(candidate_dir), data_dir, holdout)]
    gate = crossval_gate(mine, theirs, scores, policy)
    metrics = {
        **gate.metrics,
        "production_version": production.version,
        "holdout_records": list(holdout),
    }
    decision = StepDecision("gate", gate.passed, gate.reasons, metrics)
    _record(settings, run_id, version, decision)
    with_registry(settings, lambda r: r.add_metrics(version, "holdout", gate.metrics["holdout"]))
    return decision


def staging_step(
    settings: Settings, policy: ReleasePolicy, version: str, run_id: str, progress: Progress
) -> StepDecision:
    from tuning._infravalidation import infravalidate

    model_dir = with_registry(settings, lambda r: r.artifact_dir(version))
    expected_path = model_dir / EXPECTED_FILE
    if not expected_path.exists():
        decision = StepDecision(
            "staging", False, [f"no offline predictions recorded for {version} ({EXPECTED_FILE})"]
        )
    else:
        with_registry(settings, lambda r: r.set_alias("staging", version, "staged"))
        result = infravalidate(
            settings,
            version,
            model_dir,
            expected_path.read_bytes(),
            policy.infravalidation,
            settings.records_dir,
            on_progress=progress,
        )
        decision = StepDecision("staging", result.passed, result.reasons, result.metrics)
    _record(settings, run_id, version, decision)
    return decision


def release_run(
    settings: Settings,
    policy: ReleasePolicy,
    *,
    candidate: str | None = None,
    promote_on_pass: bool = True,
    progress: Progress = lambda text: None,
    verbose: int = 1,
) -> ReleaseReport:
    """The whole chain; with `candidate` (a registered version) it starts at the gate."""
    run_id = new_run_id()
    report = ReleaseReport(run_id)
    if candidate is None:
        tuned = tune_and_register(settings, policy, run_id, progress=progress, verbose=verbose)
        if isinstance(tuned, list):
            report.steps += tuned
            return report
        report.steps += tuned.decisions
        candidate = tuned.version.version
    version = report.candidate = candidate
    for step in (gate_step, staging_step):
        decision = step(settings, policy, version, run_id, progress)
        report.steps.append(decision)
        if not decision.passed:
            return report
    if promote_on_pass:
        from tuning.guard import guard_promotion, read_signals

        progress(f"promoting {version}")
        try:
            baseline = read_signals(settings)
            outcome = promote(settings, version, reason="release run", run_id=run_id)
            report.steps.append(
                StepDecision(
                    "promotion",
                    True,
                    [f"production {outcome['previous'] or 'shipped default'} -> {version}"],
                    outcome,
                )
            )
            report.promoted = version
        except Exception as exc:  # the switch timed out or was refused: production unchanged
            failed = StepDecision("promotion", False, [f"not promoted: {exc}"[:500]])
            _record(settings, run_id, version, failed)
            report.steps.append(failed)
            return report
        progress(f"guarding {version} for {policy.guard.window_s:.0f} s")
        guarded = guard_promotion(settings, version, baseline, policy.guard, run_id)
        report.steps.append(guarded)  # recorded by the guard
        if not guarded.passed:
            report.promoted = None
    return report


def _record(settings: Settings, run_id: str, version: str | None, decision: StepDecision) -> None:
    with_registry(
        settings,
        lambda r: r.record_decision(
            run_id, version, decision.name, decision.passed, decision.reasons, decision.metrics
        ),
    )
