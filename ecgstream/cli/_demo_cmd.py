"""`ecgstream demo`: what `make demo` runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
from ecgstream.settings import load_settings


@reports_errors
def demo(
    patients: int = typer.Option(12, min=1, help="simulated patients"),
    minutes: float = typer.Option(1.5, min=0.1, help="minutes of ECG per patient"),
    speed: float = typer.Option(1.0, min=0.0, help="x real time (0 = as fast as possible)"),
    report: Path = typer.Option(Path("out/demo"), help="folder for the HTML report"),
) -> None:
    """Stack up, pipeline up, stream real MIT-BIH patients live, then a summary and a report."""
    from actors.pipeline import stream_status, stream_up
    from cluster.stack import LocalStack
    from cluster.station_server import StationServer
    from ecgstream.cli._cluster_cmd import _event, print_status
    from ecgstream.cli._stream_cmd import print_pipeline
    from ecgstream.demo.live import alarm_priority, run_live_demo, write_report
    from ecgstream.io.db import with_connection
    from ecgstream.io.station_store import login_link_token

    settings = load_settings()
    stack = LocalStack(settings)
    console.rule("[bold]1. local stack: Kafka, PostgreSQL, Prometheus, Ray")
    stack.up(on_event=_event)
    console.rule("[bold]2. pipeline: Ray Serve classifier + coordinator + consumer actors")
    print_pipeline(stream_up(settings, consumers=2, replicas=1))
    console.rule("[bold]3. central station: the nurses' live page")
    station = StationServer(settings)
    station.start()
    station.wait_ready()
    valid_s = settings.station.login_link_valid_s
    token = with_connection(
        settings, lambda conn: login_link_token(conn, "demo nurse", "station", valid_s)
    )
    console.print(
        f"central station at [bold]{station.url}[/]; one-time login (valid {valid_s / 60:.0f} min):"
    )
    console.print(f"  {station.url}/login/once?token={token}", soft_wrap=True)
    console.rule(f"[bold]4. {patients} patients streaming at {speed:g}x real time")
    prefix, stats, state = asyncio.run(
        run_live_demo(
            settings,
            console,
            patients=patients,
            duration_s=minutes * 60,
            speed=speed,
            status=lambda: stream_status(settings) or {"consumers": []},
        )
    )
    console.rule("[bold]5. summary")
    summary = Table(title=f"demo run {prefix}")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("patients", str(len(stats.devices)))
    summary.add_row("chunks published", str(stats.chunks))
    summary.add_row("beats classified and stored", str(state.beats))
    for name in ("N", "S", "V", "F"):
        summary.add_row(f"  class {name}", str(state.classes.get(name, 0)))
    summary.add_row("alarms", str(state.alarm_count))
    for (kind, severity), n in sorted(state.alarm_kinds.items(), key=alarm_priority):
        summary.add_row(f"  {kind} ({severity})", str(n))
    summary.add_row("malformed messages dead-lettered", str(state.dead_letters))
    if state.p50_ms is not None:
        summary.add_row(
            "latency p50 / p99 (last 30 s)", f"{state.p50_ms:.0f} / {state.p99_ms:.0f} ms"
        )
    console.print(summary)
    path = asyncio.run(write_report(settings, prefix, stats, state, report))
    console.print(f"HTML report: [bold]{path}[/]")
    print_status(stack)
    console.print(
        f"central station still at [bold]{station.url}[/] (another login: "
        "[bold].venv/bin/ecgstream station login-link --name <who>[/])"
    )
    console.print(
        "stop with [bold].venv/bin/ecgstream station down[/], "
        "[bold].venv/bin/ecgstream stream down[/] and [bold].venv/bin/ecgstream cluster down[/]"
    )
