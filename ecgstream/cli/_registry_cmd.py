"""`ecgstream registry list | show | add` and `ecgstream tune`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
from ecgstream.settings import load_settings

registry_app = typer.Typer(help="Model versions, their lineage, aliases and release decisions.")


@registry_app.command("list")
@reports_errors
def list_versions(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Every registered version, oldest first, with its aliases and scores."""
    from tuning.promotion import with_registry

    versions = with_registry(load_settings(), lambda r: r.list())
    if json_out:
        console.print_json(json.dumps([v.summary() for v in versions], default=str))
        return
    table = Table(title="model registry")
    for column in ("version", "aliases", "created", "produced by", "test F1", "holdout F1"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            v.version,
            ", ".join(v.aliases),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.produced_by,
            _f1(v.metrics.get("test")),
            _f1(v.metrics.get("holdout")),
        )
    console.print(table)


def _f1(split: dict | None) -> str:
    return "" if not split else f"{split.get('macro_f1', float('nan')):.3f}"


@registry_app.command()
@reports_errors
def show(version: str = typer.Argument(...)) -> None:
    """A version's lineage, metrics per split, and every release decision about it."""
    from ecgstream.errors import ConfigurationError
    from tuning.promotion import with_registry

    async def details(registry):
        found = await registry.get(version)
        if found is None:
            raise ConfigurationError(f"no model version {version!r} in the registry")
        decisions = await registry.decisions(version)
        return found, decisions

    found, decisions = with_registry(load_settings(), details)
    console.print_json(
        json.dumps(
            {
                **found.summary(),
                "decisions": [
                    {
                        "run_id": d.run_id,
                        "step": d.step,
                        "decision": d.decision,
                        "reasons": d.reasons,
                        "at": d.decided_at.isoformat(timespec="seconds"),
                    }
                    for d in decisions
                ],
            },
            default=str,
        )
    )


@registry_app.command()
@reports_errors
def add(
    artifact: Path = typer.Option(..., help="a model artifact directory"),
    produced_by: str = typer.Option("import", help="what produced it (kept as lineage)"),
) -> None:
    """Register an artifact made elsewhere (e.g. `ecgstream train`); it is copied into the
    artifact store. It can be shadowed and promoted, but has no offline predictions for
    infravalidation until it comes through `release run`."""
    from tuning.promotion import with_registry

    registered = with_registry(load_settings(), lambda r: r.register(artifact, produced_by))
    console.print(f"registered [bold]{registered.version}[/] at {registered.location}")


@reports_errors
def tune(
    samples: int | None = typer.Option(None, min=1, help="trials (default: the policy's)"),
    epochs: int | None = typer.Option(None, min=1, help="max epochs per trial (policy's)"),
    beats_per_record: int | None = typer.Option(
        None, min=0, help="labelled beats per training record, 0 = all (policy's)"
    ),
    name: str | None = typer.Option(None, help="experiment name (resume it by naming it again)"),
    resume: bool = typer.Option(True, "--resume/--fresh", help="resume an interrupted search"),
    policy: Path | None = typer.Option(None, help="policy file (default: the reviewed one)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the steps here"),
) -> None:
    """Ray Tune search (Optuna TPE + ASHA, early stopping on the validation patients), then
    selection on the test patients; the selected model is registered as a candidate."""
    from ecgstream.cli._release_cmd import _budget, _policy, _print_steps, _write_json
    from tuning.release import new_run_id, tune_and_register

    rules = _budget(_policy(policy), samples, epochs, beats_per_record)
    run_id = new_run_id()
    console.print(f"search {name or 'search-' + run_id}: progress below (Ray Tune's table)")
    outcome = tune_and_register(
        load_settings(), rules, run_id, name=name, resume=resume, progress=console.print
    )
    steps = outcome if isinstance(outcome, list) else outcome.decisions
    _print_steps(steps)
    _write_json(json_out, {"steps": [s.to_dict() for s in steps]})
    if isinstance(outcome, list):
        raise typer.Exit(1)
    console.print(f"candidate: [bold]{outcome.version.version}[/]")
