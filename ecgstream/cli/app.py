from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from ecgstream.errors import EcgstreamError

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="ecgstream",
    help="Real-time ECG arrhythmia detection on Kafka, Ray and PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print an ecgstream error as one line and exit 1 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EcgstreamError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None

    return wrapper


def _register() -> None:
    # imported for their side effect of adding commands; kept here to avoid import cycles
    from ecgstream.cli import cluster_cmd, demo_cmd

    app.add_typer(cluster_cmd.cluster_app, name="cluster")
    app.command("demo")(demo_cmd.demo)


_register()


def main() -> None:
    app()
