"""`ecgstream bench ...`: speed figures as JSON, each beside a baseline measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ecgstream.cli.app import console, reports_errors
from ecgstream.settings import load_settings

bench_app = typer.Typer(help="Benchmarks that print JSON (ratios against a same-run baseline).")


def _emit(result: dict, json_out: Path | None) -> None:
    text = json.dumps(result, indent=1)
    console.print_json(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")


@bench_app.command()
@reports_errors
def preprocess(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    records: list[str] = typer.Option(["101", "208", "203"], help="records to process"),
    chunk_s: float = typer.Option(1.0, min=0.01, help="chunk length fed to the stream"),
    data: Path | None = typer.Option(None),
) -> None:
    """Streaming preprocessing (filter, detector, features) vs wfdb's XQRS, on one core."""
    from ecgstream.benchmarks import bench_preprocess

    result = bench_preprocess(data or load_settings().records_dir, records, chunk_s=chunk_s)
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def pipeline(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    records: list[str] = typer.Option(
        ["119", "208", "101", "106", "203", "223"], help="records the patients play"
    ),
    patients: int = typer.Option(24, min=1),
    seconds: float = typer.Option(120.0, min=10, help="seconds of ECG per patient"),
    latency_patients: int = typer.Option(50, min=1, help="patients at 1x for the latency run"),
    latency_seconds: float = typer.Option(30.0, min=5),
) -> None:
    """Pipeline throughput vs the bare model and a single-process consumer, on the real stack
    (needs `ecgstream cluster up` and `ecgstream stream up`)."""
    import asyncio

    from actors.pipeline import connect
    from ecgstream.tools.bench_pipeline import Workload, bench_pipeline

    settings = load_settings()
    connect(settings)
    result = asyncio.run(
        bench_pipeline(
            settings,
            Workload(tuple(records), patients, seconds),
            latency_patients,
            latency_seconds,
            on_step=lambda step: console.print(f"[dim]measuring: {step}[/]"),
        )
    )
    _emit(result, json_out)
