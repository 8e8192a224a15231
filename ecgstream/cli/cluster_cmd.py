"""`ecgstream cluster up | down | status`: the local stack."""

from __future__ import annotations

import typer
from rich.table import Table

from ecgstream.cli.app import console, reports_errors
from ecgstream.settings import load_settings

cluster_app = typer.Typer(help="Run the local stack: Kafka, PostgreSQL, Prometheus, Ray.")


def _event(name: str, event: str) -> None:
    colour = {"ready": "green", "stopped": "yellow", "starting": "cyan"}.get(event, "dim")
    console.print(f"  {name:<11} [{colour}]{event}[/]")


@cluster_app.command()
@reports_errors
def up() -> None:
    """Start every local component that is not configured as external; wait until ready."""
    from cluster.stack import LocalStack

    stack = LocalStack(load_settings())
    console.print(f"local stack in [bold]{stack.settings.state_dir}[/]")
    stack.up(on_event=_event)
    print_status(stack)


@cluster_app.command()
@reports_errors
def down() -> None:
    """Stop the components this state dir started (by pid); leave everything else alone."""
    from cluster.stack import LocalStack

    LocalStack(load_settings()).down(on_event=_event)


@cluster_app.command()
@reports_errors
def status() -> None:
    """A table of components, endpoints and health. Exit 1 if any is unhealthy."""
    from cluster.stack import LocalStack

    if not print_status(LocalStack(load_settings())):
        raise typer.Exit(1)


def print_status(stack: object) -> bool:
    from cluster.stack import LocalStack

    assert isinstance(stack, LocalStack)
    table = Table(title="ecgstream local stack")
    for column in ("component", "pid", "endpoint", "health", "detail"):
        table.add_column(column, no_wrap=column != "detail")
    statuses = stack.status()
    for s in statuses:
        table.add_row(
            s.name,
            str(s.pid or "-"),
            s.endpoint,
            "[green]healthy[/]" if s.healthy else "[red]down[/]",
            s.detail,
        )
    console.print(table)
    for s in statuses:
        if not s.healthy and s.log_file is not None:
            console.print(f"  {s.name} log: {s.log_file}")
    return all(s.healthy for s in statuses)
