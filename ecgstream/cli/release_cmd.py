"""`ecgstream release ...`: the steps of a model release (the holdout gate so far)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ecgstream.cli.app import console, reports_errors
from ecgstream.settings import load_settings

release_app = typer.Typer(help="Model release steps, judged by tuning/release-policy.toml.")


@release_app.command()
@reports_errors
def gate(
    candidate: Path = typer.Option(..., help="the candidate's model artifact directory"),
    records: list[str] = typer.Option(..., help="holdout records: --records R [R ...]"),
    production: Path | None = typer.Option(
        None, help="the production artifact (none: the first model, absolute thresholds)"
    ),
    policy: Path | None = typer.Option(None, help="policy file (default: the reviewed one)"),
    data: Path | None = typer.Option(None, help="WFDB records (default: the configured data)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the decision here"),
) -> None:
    """Score both models on the holdout patients (whole streaming path, EC57) and apply the
    release policy: margin, per-class tolerance, paired bootstrap over patients. Exit code 1
    when the candidate is refused."""
    from ecgstream.artifact import load_artifact
    from ecgstream.evaluation import evaluate_records
    from ecgstream.release.gate import holdout_gate
    from ecgstream.release.policy import DEFAULT_POLICY, load_policy

    data_dir = data if data is not None else load_settings().records_dir
    rules = load_policy(policy or DEFAULT_POLICY)
    with console.status("scoring the candidate on the holdout patients"):
        mine = [r.score for r in evaluate_records(load_artifact(candidate), data_dir, records)]
    theirs = None
    if production is not None:
        with console.status("scoring production on the same patients"):
            theirs = [
                r.score for r in evaluate_records(load_artifact(production), data_dir, records)
            ]
    decision = holdout_gate(mine, theirs, rules)
    for reason in decision.reasons:
        console.print(reason, style=None if reason.startswith("ok") else "bold red")
    result = {"name": "holdout_gate", "decision": decision.decision, "reasons": decision.reasons}
    text = json.dumps({**result, "metrics": decision.metrics}, indent=1, default=str)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    console.print(f"decision: [bold]{decision.decision}[/]")
    if not decision.passed:
        raise typer.Exit(1)
