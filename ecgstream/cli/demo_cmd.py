"""`ecgstream demo`: what `make demo` runs."""

from __future__ import annotations

import asyncio

import typer

from ecgstream.cli.app import console, reports_errors
from ecgstream.settings import load_settings


@reports_errors
def demo(
    record: str = typer.Option("101", help="MIT-BIH record to publish"),
    chunks: int = typer.Option(10, min=1, help="number of 1-second chunks"),
) -> None:
    """Bring the stack up, publish chunks of a real record to Kafka, read them back."""
    from cluster.stack import LocalStack
    from ecgstream.cli.cluster_cmd import _event, print_status
    from ecgstream.tools.demo import print_round_trips, publish_and_read_back

    stack = LocalStack(load_settings())
    console.rule("[bold]1. local stack")
    stack.up(on_event=_event)
    console.rule("[bold]2. real ECG through Kafka")
    results = asyncio.run(publish_and_read_back(stack.settings, record, chunks))
    print_round_trips(console, record, results)
    console.rule("[bold]3. status")
    healthy = print_status(stack)
    if not healthy or not all(r.identical for r in results):
        raise typer.Exit(1)
    console.print("stop the stack with [bold].venv/bin/ecgstream cluster down[/]")
