"""`ecgstream bench ...`: speed figures as JSON, each beside a baseline measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ecgstream.cli._common import console, reports_errors
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
    from ecgstream.benchmarks.preprocess import bench_preprocess

    result = bench_preprocess(data or load_settings().records_dir, records, chunk_s=chunk_s)
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def pipeline(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    records: list[str] = typer.Option(
        ["119", "208", "101", "106", "203", "223"], help="records the patients play"
    ),
    patients: int = typer.Option(60, min=1, help="patients in the throughput workload"),
    seconds: float = typer.Option(300.0, min=10, help="seconds of ECG per patient"),
    repeats: int = typer.Option(3, min=1, help="baseline/pipeline pairs (medians reported)"),
    realtime: bool = typer.Option(True, help="search the real-time capacity (minutes)"),
    realtime_start: int = typer.Option(250, min=1, help="first load of the search"),
    realtime_max: int = typer.Option(4000, min=1, help="stop doubling here"),
    realtime_seconds: float = typer.Option(120.0, min=10, help="length of each load"),
    latency_seconds: float = typer.Option(60.0, min=5, help="length of the half-load run"),
    latency_patients: int = typer.Option(
        50, min=1, help="with --no-realtime: the load the latency is measured at"
    ),
    compare_transactions: bool = typer.Option(
        False,
        help="also time the pipeline with Kafka transactions off (their cost; restarts the "
        "consumer pool twice; not covered by make test)",
    ),
) -> None:
    """Pipeline throughput vs the bare model and a single-process consumer, the real-time
    capacity and the latency at half of it, on the real stack (needs `ecgstream cluster up`
    and `ecgstream stream up`; about 15 minutes with the real-time search)."""
    import asyncio

    from actors.pipeline import stream_status
    from ecgstream.benchmarks.pipeline import RealtimeSearch, Workload, bench_pipeline
    from ecgstream.errors import ConfigurationError

    settings = load_settings()
    if stream_status(settings) is None:  # before minutes of baselines, not after
        raise ConfigurationError("the pipeline is not running: start it with `ecgstream stream up`")
    result = asyncio.run(
        bench_pipeline(
            settings,
            Workload(tuple(records), patients, seconds),
            RealtimeSearch(realtime_start, realtime_max, realtime_seconds) if realtime else None,
            latency_seconds,
            repeats=repeats,
            fallback_latency_patients=latency_patients,
            on_step=lambda step: console.print(f"[dim]measuring: {step}[/]"),
            compare_transactions=compare_transactions,
        )
    )
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def soak(
    minutes: float = typer.Option(30.0, min=1, help="length of the run"),
    patients: int = typer.Option(200, min=1, help="patients replayed at 1x"),
    interval_s: float = typer.Option(10.0, "--interval", min=1, help="seconds between samples"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    plot: Path | None = typer.Option(None, help="PNG of every actor's memory over time"),
) -> None:
    """Replay patients at 1x for MINUTES and sample the resident memory of every actor: after
    the warm-up it must stay flat (needs `ecgstream cluster up` and `ecgstream stream up`)."""
    import asyncio

    from rich.progress import Progress

    from actors.pipeline import connect
    from ecgstream.benchmarks.soak import bench_soak

    settings = load_settings()
    connect(settings)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"soak: {patients} patients at 1x", total=minutes * 60)

        def on_sample(t: float, memory: dict[str, float]) -> None:
            total = sum(memory.values())
            progress.update(task, completed=t, description=f"soak: actors {total:,.0f} MB")

        result = asyncio.run(
            bench_soak(settings, minutes, patients, interval_s, plot, on_sample=on_sample)
        )
    summary = {k: v for k, v in result.items() if k != "samples"}
    console.print_json(json.dumps(summary))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1) + "\n")


@bench_app.command()
@reports_errors
def drift(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    inject_s: float = typer.Option(240.0, min=60, help="stream second the fault starts"),
    after_s: float = typer.Option(120.0, min=30, help="stream seconds watched after it"),
    clean_passes: int = typer.Option(2, min=1, help="times the clean fleet is replayed"),
    data: Path | None = typer.Option(None),
) -> None:
    """Inject each fault (noise, gain x0.5/x2, baseline wander, inverted/swapped lead, wrong
    sampling rate, flat line, changed class mix) into a fleet playing the DS1 records, through
    the pipeline's own processing and monitor code at full speed; report each detection delay
    and the false alarms per hour of clean replay. Needs no running stack."""
    from ecgstream.benchmarks.drift import bench_drift

    result = bench_drift(
        data or load_settings().records_dir,
        inject_s=inject_s,
        after_s=after_s,
        clean_passes=clean_passes,
        on_step=lambda step: console.print(f"[dim]{step}[/]"),
    )
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def api(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    seconds: float = typer.Option(20.0, min=2, help="seconds of load on each server"),
    concurrency: int = typer.Option(8, min=1, help="requests in flight"),
    replicas: int = typer.Option(2, min=1, help="API ingress replicas (as `api up`)"),
) -> None:
    """REST API vs a single-process FastAPI + PyTorch server: requests/s and p50/p99 latency
    for 10-second segments under the same concurrent load from a separate process (needs
    `ecgstream cluster up`; deploys and removes the API itself)."""
    from ecgstream.benchmarks.api import bench_api

    settings = load_settings()
    with console.status("benchmarking the REST API and the baseline"):
        result = bench_api(settings, settings.records_dir, seconds, concurrency, replicas)
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def edge(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    bundle: Path | None = typer.Option(None, help="an edge bundle (default: export the shipped)"),
    records: list[str] | None = typer.Option(None, help="records (default: all of DS1)"),
    data: Path | None = typer.Option(None),
) -> None:
    """The edge runner on one core, fp32 and int8: ms per beat, peak RSS, model sizes and
    agreement with the server on real records (PyTorch on one thread as the baseline)."""
    import tempfile

    from ecgstream.benchmarks.edge import bench_edge
    from ecgstream.edge.export import export_bundle
    from ecgstream.splits import DS1

    chosen = records or list(DS1)
    with tempfile.TemporaryDirectory(prefix="ecgstream-bench-edge-") as tmp:
        if bundle is None:
            bundle = Path(tmp) / "bundle"
            with console.status("exporting the shipped model"):
                export_bundle(None, bundle)
        with console.status("edge vs server") as status:
            result = bench_edge(
                bundle,
                data or load_settings().records_dir,
                chosen,
                lambda name: status.update(f"edge vs server: record {name} of {len(chosen)}"),
            )
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def nodes(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    nodes: int = typer.Option(3, min=2, help="Ray nodes of the spread layout"),
    consumers: int = typer.Option(3, min=1),
    replicas: int = typer.Option(3, min=1, help="classifier replicas"),
    patients: int = typer.Option(40, min=1),
    seconds: float = typer.Option(300.0, min=10, help="seconds of signal per patient"),
    repeats: int = typer.Option(2, min=1),
) -> None:
    """The pipeline on N Ray nodes vs on one node with the same CPUs, consumers and replicas
    (needs `ecgstream cluster up` for Kafka and PostgreSQL, and the stack's stream down)."""
    from ecgstream.benchmarks.nodes import bench_nodes
    from ecgstream.benchmarks.pipeline import Workload

    workload = Workload(("119", "208", "101", "106", "203", "223"), patients, seconds)
    with console.status("multi-node bench") as status:
        result = bench_nodes(
            load_settings(), workload, nodes, consumers, replicas, repeats, status.update
        )
    _emit(result, json_out)


@bench_app.command()
@reports_errors
def bandwidth(
    json_out: Path | None = typer.Option(None, "--json", help="also write the JSON here"),
    records: list[str] = typer.Option(
        ["119", "208", "101", "106", "203", "223"], help="records the patients play"
    ),
    seconds: float = typer.Option(300.0, min=10, help="seconds of ECG per patient"),
    data: Path | None = typer.Option(None),
) -> None:
    """Bytes per patient per second in and out of each deployment (streaming, REST, edge),
    beside the raw signal's, by encoding real records as each sends them; no services."""
    from ecgstream.benchmarks.bandwidth import bench_bandwidth

    _emit(bench_bandwidth(data or load_settings().records_dir, records, seconds), json_out)
