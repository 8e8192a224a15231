"""`ecgstream fuzz`: the wire decoder and the API's request parsing under hypothesis (and atheris
where it is installed) for a time budget. The JSON summary goes to stdout (and `--json`), the
table and progress to stderr; the exit status is 1 when any target failed."""

from __future__ import annotations

import faulthandler
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ecgstream.cli._common import console, err_console, reports_errors
from ecgstream.errors import ConfigurationError

PROGRESS_EVERY_S = 10.0
HANG_GRACE_S = 300.0  # past the budget by this much, the run is hung: dump the stacks and exit


def _progress_printer() -> Any:
    last = [time.monotonic()]

    def report(target: str, state: dict[str, Any]) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            err_console.print(
                f"fuzz {target}: {state['examples']} examples, "
                f"{state['seconds_left']:.0f} s left for this target"
            )

    return report


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"fuzz: {summary['minutes']:g} min, atheris: {summary['atheris']}")
    for column in ("target", "examples", "accepted", "rejected", "atheris runs", "failures"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for name, result in summary["targets"].items():
        atheris = result.get("atheris")
        failures = len(result["failures"])
        if isinstance(atheris, dict):
            failures += len(atheris["failures"])
        table.add_row(
            name,
            str(result["examples"]),
            str(result["accepted"]),
            str(sum(result["rejected"].values())),
            str(atheris["runs"]) if isinstance(atheris, dict) else "-",
            f"[bold red]{failures}[/]" if failures else "0",
        )
    return table


@reports_errors
def fuzz(
    minutes: float = typer.Option(1.0, min=0.001, help="time budget, shared by the targets"),
    seed: int | None = typer.Option(None, help="make the run reproducible"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    atheris: bool = typer.Option(
        True, "--atheris/--no-atheris", help="also run atheris, where it is installed"
    ),
    keep_examples: bool = typer.Option(
        False, help="keep failing examples under <state_dir>/fuzz, replayed first next time"
    ),
) -> None:
    """Fuzz the wire-format decoder and the REST API's request parsing: no crash, no hang,
    every rejection a clear reason (exit 1 and the shrunk input on any failure)."""
    try:
        from ecgstream.fuzzing.runner import run_fuzz
    except ImportError as exc:
        raise ConfigurationError(
            f"`ecgstream fuzz` needs the dev extras ({exc.name}): pip install -e '.[dev]'"
        ) from None
    database_dir = None
    if keep_examples:
        from ecgstream.settings import load_settings

        database_dir = load_settings().state_dir / "fuzz" / "examples"
    faulthandler.dump_traceback_later(
        minutes * 60 + HANG_GRACE_S, exit=True, file=sys.__stderr__ or sys.stderr
    )
    try:
        summary = run_fuzz(
            minutes,
            seed,
            atheris=None if atheris else False,
            database_dir=database_dir,
            progress=_progress_printer(),
        )
    finally:
        faulthandler.cancel_dump_traceback_later()
    text = json.dumps(summary, indent=1)
    console.print_json(text)
    err_console.print(_table(summary))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    if not summary["ok"]:
        err_console.print(f"[bold red]fuzz: {summary['failures']} failure(s)[/]")
        raise typer.Exit(1)
