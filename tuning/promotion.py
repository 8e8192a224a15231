"""Promotion, rollback and shadow mode: moving the registry's aliases and what serves them.

A version is promoted only on its evidence: its latest holdout gate and its latest staging
(infravalidation) decisions in the registry must both have passed. `override` (a person's
stated reason) is the one way around, and it is recorded as a decision of its own and in the
alias history, so the registry shows who released what without evidence and why.

Promotion swaps the production replicas' model in place (see actors/model_directory.py): no
redeploy, no gap, every beat says which version classified it. The live consumers keep their
preprocessing, so a candidate must use the same preprocessing as the model it replaces (window
lengths differ by cropping inside the network, not in the stream); anything else is refused
with the reason, since it needs a pipeline restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ecgstream.artifact import load_artifact
from ecgstream.errors import ConfigurationError
from ecgstream.io.registry import Decision, Registry, open_registry
from ecgstream.settings import Settings

T = TypeVar("T")
REQUIRED_DECISIONS = ("gate", "staging")  # what a promotion needs to have passed


def with_registry(settings: Settings, work: Callable[[Registry], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_registry(settings) as registry:
            return await work(registry)

    return asyncio.run(run())


def _served_production_dir(settings: Settings) -> tuple[bool, str | None]:
    """(is the pipeline up, the model dir its production replicas run; None = shipped default)."""
    from actors.pipeline import served_model

    target = served_model(settings, "production")
    return (target is not None, target.model_dir if target is not None else None)


def check_compatible(candidate: Path, serving: str | None) -> None:
    """The live consumers cut beats for the serving model's preprocessing: refuse a candidate
    that expects different input."""
    mine = load_artifact(candidate).preprocess
    theirs = load_artifact(None if serving is None else Path(serving)).preprocess
    if mine != theirs:
        raise ConfigurationError(
            "the candidate's preprocessing differs from the serving model's; promoting it "
            "needs a pipeline restart (`ecgstream stream down` then `stream up --model ...`)"
        )


def _switch(settings: Settings, version: str | None, model_dir: Path | None) -> dict[str, Any]:
    """Swap the running production replicas to `model_dir` (if the pipeline is up)."""
    from actors.pipeline import switch_model

    running, serving = _served_production_dir(settings)
    if not running:
        return {"pipeline": "not running: `stream up` will serve the production alias"}
    if model_dir is not None:
        check_compatible(model_dir, serving)
    loaded = switch_model(settings, "production", None if model_dir is None else str(model_dir))
    return {"pipeline": "switched", "replicas": loaded, "version": version}


def missing_evidence(decisions: list[Decision]) -> list[str]:
    """What a version lacks to be promoted: each required step whose latest decision is not a
    pass ("gate: never run", "staging: failed"); empty when it may be promoted."""
    latest = {d.step: d.decision for d in decisions}  # decisions come oldest first
    return [
        f"{step}: {'never run' if step not in latest else 'failed'}"
        for step in REQUIRED_DECISIONS
        if latest.get(step) != "pass"
    ]


def promote(
    settings: Settings,
    version: str,
    reason: str = "promote",
    run_id: str = "cli",
    override: str | None = None,
) -> dict[str, Any]:
    """Make `version` production: swap the serving replicas, then move the alias. Refused
    unless its gate and staging passed, or `override` gives the reason to go without."""
    model_dir = with_registry(settings, lambda r: r.artifact_dir(version))
    missing = with_registry(settings, lambda r: _missing(r, version))
    if missing and not (override and override.strip()):
        raise ConfigurationError(
            f"{version} has no passed release decisions ({'; '.join(missing)}): run "
            f"`ecgstream release run --candidate {version}`, or promote it anyway with "
            "`--override REASON` (recorded in the registry)"
        )
    if missing:
        reason = f"override: {override}"
    outcome = _switch(settings, version, model_dir)

    async def record(registry: Registry) -> str | None:
        if missing:
            await registry.record_decision(
                run_id,
                version,
                "override",
                True,
                [f"promoted without {', '.join(missing)}", f"reason: {override}"],
            )
        previous = await registry.set_alias("production", version, reason)
        if await registry.alias("staging") == version:
            await registry.set_alias("staging", None, "promoted")
        await registry.record_decision(
            run_id,
            version,
            "promotion",
            True,
            [f"production {previous or 'shipped default'} -> {version} ({reason})"],
            outcome,
        )
        return previous

    previous = with_registry(settings, record)
    overridden = {"override": override, "missing": missing} if missing else {}
    return {"promoted": version, "previous": previous, **overridden, **outcome}


async def _missing(registry: Registry, version: str) -> list[str]:
    return missing_evidence(await registry.decisions(version))


def rollback(settings: Settings, reason: str = "rollback", run_id: str = "cli") -> dict[str, Any]:
    """Return production to the version before the current one (the shipped default model if
    the current one was the first promoted). `reason` goes into the alias history and the
    decision (the guard's: "automatic: ...")."""

    async def target(registry: Registry) -> tuple[str | None, str | None, Path | None]:
        lineage = await registry.production_lineage()
        if len(lineage) < 2:
            raise ConfigurationError("nothing to roll back to: production was never promoted")
        back_to = lineage[-2]
        model_dir = None if back_to is None else await registry.artifact_dir(back_to)
        return lineage[-1], back_to, model_dir

    current, back_to, model_dir = with_registry(settings, target)
    outcome = _switch(settings, back_to, model_dir)

    async def record(registry: Registry) -> None:
        await registry.set_alias("production", back_to, reason)
        if current is not None:
            await registry.record_decision(
                run_id,
                current,
                "rollback",
                True,
                [f"production {current} -> {back_to or 'shipped default'} ({reason})"],
                outcome,
            )

    with_registry(settings, record)
    return {"rolled_back": current, "production": back_to, **outcome}


def production_model_dir(settings: Settings) -> str | None:
    """What `stream up` serves: the production alias, else the shipped default (None)."""

    async def find(registry: Registry) -> str | None:
        version = await registry.alias("production")
        return None if version is None else str(await registry.artifact_dir(version))

    try:
        return with_registry(settings, find)
    except (OSError, asyncpg.PostgresError):
        return None


# -- shadow ----------------------------------------------------------------------------------


def shadow_start(settings: Settings, version: str, consumers: int = 1) -> dict[str, Any]:
    """Mirror live traffic to `version`: its own consumers (own consumer group) and Serve app;
    results go to `ecg.beats.shadow` and `beats_shadow`, never to alarms or the monitor."""
    from actors.pipeline import lane_up

    model_dir = with_registry(settings, lambda r: r.artifact_dir(version))
    status = lane_up(settings, "shadow", str(model_dir), consumers=consumers)
    with_registry(settings, lambda r: r.set_alias("shadow", version, "shadow started"))
    return {"shadow": version, "load_s": round(status["load_s"], 2)}


def shadow_stop(settings: Settings) -> dict[str, Any]:
    from actors.pipeline import lane_down

    lane_down(settings, "shadow")
    previous = with_registry(settings, lambda r: r.set_alias("shadow", None, "shadow stopped"))
    return {"stopped": previous}


async def _shadow_comparison(conn: asyncpg.Connection, version: str) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT p.label AS production, s.label AS shadow, count(*) AS n,
                  avg(s.latency_ms) AS shadow_latency, avg(p.latency_ms) AS production_latency
           FROM beats_shadow s JOIN beats p USING (device_id, session_id, sample_index)
           WHERE s.model_version = $1
           GROUP BY p.label, s.label""",
        version,
    )
    shadow_only = await conn.fetchval(
        """SELECT count(*) FROM beats_shadow s WHERE s.model_version = $1 AND NOT EXISTS
             (SELECT 1 FROM beats p WHERE p.device_id = s.device_id
                                       AND p.session_id = s.session_id
                                       AND p.sample_index = s.sample_index)""",
        version,
    )
    confusion: dict[str, dict[str, int]] = {}
    total = agree = 0
    for row in rows:
        confusion.setdefault(row["production"], {})[row["shadow"]] = int(row["n"])
        total += int(row["n"])
        agree += int(row["n"]) if row["production"] == row["shadow"] else 0
    by_class = {}
    for label in sorted({r["production"] for r in rows} | {r["shadow"] for r in rows}):
        by_class[label] = {
            "production": sum(n for s, n in confusion.get(label, {}).items()),
            "shadow": sum(c.get(label, 0) for c in confusion.values()),
        }
    return {
        "shadow_version": version,
        "compared_beats": total,
        "agreement": round(agree / total, 4) if total else None,
        "confusion_production_vs_shadow": confusion,
        "beats_per_class": by_class,
        "shadow_only_beats": int(shadow_only),
    }


def shadow_report(settings: Settings, version: str | None = None) -> dict[str, Any]:
    """Production and shadow labels on the same beats: agreement, confusion, class counts."""

    async def run(registry: Registry) -> dict[str, Any]:
        chosen = version or await registry.alias("shadow")
        if chosen is None:
            raise ConfigurationError("no shadow version: start one with `release shadow VERSION`")
        return await _shadow_comparison(registry.connection, chosen)

    return with_registry(settings, run)
