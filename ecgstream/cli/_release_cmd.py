"""`ecgstream release ...`: the steps of a model release, one by one or chained (`run`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
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


_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


@release_app.command("gate-power")
@reports_errors
def gate_power(
    equal_pair: tuple[Path, Path] = typer.Option(
        (_RESULTS / "crossval_ds1.json", _RESULTS / "crossval_ds1_retrained.json"),
        help="two crossval reports of the same recipe on the same folds (retrained)",
    ),
    recipe_pair: tuple[Path, Path] | None = typer.Option(
        (_RESULTS / "crossval_ds1_rr_template_v1.json", _RESULTS / "crossval_ds1.json"),
        help="two different recipes' crossval reports: patient-level differences as large as "
        "a change of recipe makes them",
    ),
    patients: list[int] = typer.Option([5, 22], help="patients the gate sees: --patients N ..."),
    shares: list[float] = typer.Option(
        [-0.1, -0.05, 0.0, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3],
        help="share of misclassified beats the candidate fixes (negative: production does)",
    ),
    simulations: int = typer.Option(1000, min=10, help="simulated releases per point"),
    power: float = typer.Option(0.8, help="the pass rate a real improvement must reach"),
    seed: int = typer.Option(0),
    policy: Path | None = typer.Option(None, help="policy file (default: the reviewed one)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the study here"),
    plot: Path | None = typer.Option(None, help="write the power curves (PNG) here"),
) -> None:
    """Simulate the gate's rule on real EC57 scores: how often a better, equal or worse
    candidate passes, for each number of patients the gate sees (decision 99)."""
    from rich.progress import Progress

    from ecgstream.release.gate import pooled_macro_f1, report_confusions, same_folds
    from ecgstream.release.gate_power import (
        ModelPair,
        power_study,
        smallest_gain_with_power,
        worst_false_pass,
    )

    rule = _policy(policy).against_production
    sources = {"same recipe retrained": equal_pair}
    if recipe_pair is not None:
        sources["different recipes"] = recipe_pair
    pairs, described = [], {}
    for name, (first, second) in sources.items():
        a, b = (json.loads(p.read_text()) for p in (first, second))
        if not same_folds(a, b):
            raise typer.BadParameter(f"{first} and {second} use different folds")
        records = sorted(r for r, e in a["records"].items() if e.get("confusion") is not None)
        pair = ModelPair(name, report_confusions(a, records), report_confusions(b, records))
        pairs.append(pair)
        described[name] = {
            "reports": [
                str(p.relative_to(_RESULTS.parents[1]))
                if p.is_relative_to(_RESULTS.parents[1])
                else p.name
                for p in (first, second)
            ],
            "patients": len(records),
            "macro_f1": [
                round(float(pooled_macro_f1(m.sum(0))), 4) for m in (pair.first, pair.second)
            ],
        }
    total = len(pairs) * len(patients) * len(shares)
    with Progress(console=console) as bar:
        task = bar.add_task("simulating releases", total=total)
        points = power_study(
            pairs,
            rule,
            patients,
            shares,
            simulations,
            seed,
            on_point=lambda point: bar.advance(task),
        )
    summary = [
        {
            "pair": pair.name,
            "patients": n,
            "smallest_gain_passing_at_power": smallest_gain_with_power(points, pair.name, n, power),
            "worst_false_pass_rate": worst_false_pass(points, pair.name, n),
        }
        for pair in pairs
        for n in patients
    ]
    table = Table(title=f"gate pass rates ({simulations} simulated releases per cell)")
    table.add_column("evidence pair")
    table.add_column("patients", justify="right")
    for share in shares:
        table.add_column(f"fix {share:+.1%}", justify="right")
    for pair in pairs:
        gains = [p["macro_f1_gain"] for p in points if p["pair"] == pair.name][: len(shares)]
        table.add_row(pair.name, "gain", *(f"{g:+.3f}" for g in gains), style="dim")
        for n in patients:
            rates = [
                p["pass_rate"] for p in points if p["pair"] == pair.name and p["patients"] == n
            ]
            table.add_row(pair.name, str(n), *(f"{100 * r:.0f}%" for r in rates))
    console.print(table)
    for row in summary:
        console.print(
            f"{row['pair']}, {row['patients']} patients: passes >= {power:.0%} from a gain of "
            f"{row['smallest_gain_passing_at_power']}; equal or worse passes at most "
            f"{row['worst_false_pass_rate']:.1%}"
        )
    study = {
        "method": (
            "per-patient EC57 matrices of two real models on the same patients; each simulated "
            "release draws patients with replacement, gives the two matrices to candidate and "
            "production in random order, then fixes share_fixed of every misclassified N/S/V/F "
            "beat in the candidate (negative: in production); the gate's rule decides"
        ),
        "rule": rule.model_dump(),
        "power_required": power,
        "pairs": described,
        "points": points,
        "summary": summary,
    }
    _write_json(json_out, study)
    if plot is not None:
        from ecgstream.plots import plot_gate_power

        console.print(f"power curves written to {plot_gate_power(points, plot, power)}")


def _policy(path: Path | None):
    from ecgstream.release.policy import DEFAULT_POLICY, load_policy

    settings = load_settings()
    return load_policy(path or settings.release.policy or DEFAULT_POLICY)


def _budget(policy, samples: int | None, epochs: int | None, beats: int | None):
    changes = {
        k: v
        for k, v in (("samples", samples), ("max_epochs", epochs), ("beats_per_record", beats))
        if v is not None
    }
    return policy.model_copy(update={"search": policy.search.model_copy(update=changes)})


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def _print_steps(steps: list) -> None:
    for step in steps:
        style = "green" if step.passed else "bold red"
        console.print(f"[{style}]{step.decision.upper()}[/] {step.name}")
        for reason in step.reasons:
            console.print(f"    {reason}", style=None if not reason.startswith("FAIL") else "red")


@release_app.command()
@reports_errors
def run(
    samples: int | None = typer.Option(None, min=1, help="trials (default: the policy's)"),
    epochs: int | None = typer.Option(None, min=1, help="max epochs per trial (policy's)"),
    beats_per_record: int | None = typer.Option(
        None, min=0, help="labelled beats per training record, 0 = all (policy's)"
    ),
    candidate: str | None = typer.Option(
        None, help="a registered version: skip search and selection, start at the gate"
    ),
    promote_on_pass: bool = typer.Option(True, "--promote/--no-promote"),
    policy: Path | None = typer.Option(None, help="policy file (default: the reviewed one)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the report here"),
) -> None:
    """Search -> selection -> holdout gate -> staging (infravalidation) -> promotion. Every
    step's decision is printed and stored in the registry; exit code 1 if any step failed."""
    from tuning.release import release_run

    rules = _budget(_policy(policy), samples, epochs, beats_per_record)
    with console.status("release run") as status:
        report = release_run(
            load_settings(),
            rules,
            candidate=candidate,
            promote_on_pass=promote_on_pass,
            progress=lambda text: status.update(text),
        )
    _print_steps(report.steps)
    _write_json(json_out, report.to_dict())
    console.print(f"promoted: [bold]{report.promoted or 'nothing'}[/] (run {report.run_id})")
    if not report.passed:
        raise typer.Exit(1)


@release_app.command()
@reports_errors
def infravalidate(
    version: str = typer.Argument(..., help="a registered version"),
    policy: Path | None = typer.Option(None, help="policy file (default: the reviewed one)"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """Stage VERSION beside production and replay the infravalidation patients through it."""
    from tuning.release import new_run_id, staging_step

    with console.status("infravalidation") as status:
        step = staging_step(
            load_settings(), _policy(policy), version, new_run_id(), lambda t: status.update(t)
        )
    _print_steps([step])
    _write_json(json_out, step.to_dict())
    if not step.passed:
        raise typer.Exit(1)


@release_app.command()
@reports_errors
def promote(
    version: str = typer.Argument(..., help="a registered version"),
    override: str | None = typer.Option(
        None,
        help="promote without a passed gate and infravalidation; the reason is recorded in "
        "the registry (a decision 'override' and the alias history)",
    ),
    guard: bool = typer.Option(
        True,
        "--guard/--no-guard",
        help="then watch the serving signals and roll back on a breach (the policy's [guard])",
    ),
    guard_window: float | None = typer.Option(
        None, min=1, help="seconds to watch (default: the policy's window_s)"
    ),
    policy: Path | None = typer.Option(None, help="policy file (default: the reviewed one)"),
) -> None:
    """Make VERSION production: the running replicas swap models in place (no gap). Refused
    unless VERSION's latest gate and staging decisions passed (`release run --candidate`).
    Then the guard watches production and rolls it back on a breach (exit code 1)."""
    from tuning.guard import guard_promotion, read_signals
    from tuning.promotion import promote as promote_version
    from tuning.release import new_run_id

    settings = load_settings()
    rules = _policy(policy).guard
    baseline = read_signals(settings) if guard else None
    run_id = new_run_id()
    with console.status(f"promoting {version}"):
        outcome = promote_version(settings, version, override=override, run_id=run_id)
    console.print_json(json.dumps(outcome, default=str))
    if baseline is None:
        return
    window = guard_window or rules.window_s
    with console.status(f"guarding {version} for {window:.0f} s") as status:
        decision = guard_promotion(
            settings, version, baseline, rules, run_id, window_s=window, progress=status.update
        )
    _print_steps([decision])
    if not decision.passed:
        raise typer.Exit(1)


@release_app.command()
@reports_errors
def rollback() -> None:
    """Return production to the version it had before the current one."""
    from tuning.promotion import rollback as roll_back

    with console.status("rolling back"):
        outcome = roll_back(load_settings())
    console.print_json(json.dumps(outcome, default=str))


@release_app.command()
@reports_errors
def shadow(
    version: str = typer.Argument(..., help="a registered version"),
    consumers: int = typer.Option(1, min=1, help="consumer actors of the shadow lane"),
) -> None:
    """Mirror live traffic to VERSION; its results go to ecg.beats.shadow and beats_shadow,
    never to alarms. Compare with `release shadow-report`, stop with `release shadow-stop`."""
    from tuning.promotion import shadow_start

    with console.status(f"starting the shadow lane for {version}"):
        outcome = shadow_start(load_settings(), version, consumers)
    console.print_json(json.dumps(outcome))


@release_app.command("shadow-stop")
@reports_errors
def shadow_stop() -> None:
    """Stop mirroring traffic to the shadow version."""
    from tuning.promotion import shadow_stop as stop

    console.print_json(json.dumps(stop(load_settings())))


@release_app.command("shadow-report")
@reports_errors
def shadow_report(
    version: str | None = typer.Option(None, help="default: the shadow alias"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """Production vs shadow on the same beats: agreement, confusion, beats per class."""
    from tuning.promotion import shadow_report as compare

    report = compare(load_settings(), version)
    table = Table(title=f"production (rows) vs shadow {report['shadow_version']} (columns)")
    labels = sorted(report["beats_per_class"])
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    for row in labels:
        counts = report["confusion_production_vs_shadow"].get(row, {})
        table.add_row(row, *(str(counts.get(c, 0)) for c in labels))
    console.print(table)
    console.print(
        f"compared beats {report['compared_beats']}, agreement {report['agreement']}, "
        f"shadow-only beats {report['shadow_only_beats']}"
    )
    _write_json(json_out, report)
