"""`ecgstream stream up | down | status | pause | resume` and `ecgstream replay`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
from ecgstream.settings import load_settings

stream_app = typer.Typer(help="The streaming pipeline on Ray (needs `ecgstream cluster up`).")


@stream_app.command()
@reports_errors
def up(
    consumers: int = typer.Option(2, min=1, help="consumer actors (to start with)"),
    replicas: int = typer.Option(1, min=1, help="Serve replicas of the classifier"),
    model: Path | None = typer.Option(
        None, help="model artifact (default: the registry's production, else the shipped model)"
    ),
    autoscale: bool | None = typer.Option(
        None,
        "--autoscale/--no-autoscale",
        help="the pool scales itself between --min-consumers and --max-consumers on lag, and "
        "Serve scales the classifier (default: ECGSTREAM_SCALING__AUTOSCALE, off)",
    ),
    min_consumers: int | None = typer.Option(None, min=1, help="autoscaling's floor"),
    max_consumers: int | None = typer.Option(None, min=1, help="autoscaling's ceiling"),
) -> None:
    """Deploy the classifier on Ray Serve and start the coordinator and its consumer pool."""
    from actors.pipeline import stream_up
    from ecgstream.settings import ScalingSettings
    from tuning.promotion import production_model_dir

    settings = load_settings()
    changes = {
        k: v
        for k, v in (
            ("autoscale", autoscale),
            ("min_consumers", min_consumers),
            ("max_consumers", max_consumers),
        )
        if v is not None
    }
    if changes:
        scaling = ScalingSettings(**{**settings.scaling.model_dump(), **changes})
        settings = settings.model_copy(update={"scaling": scaling})
    model_dir = str(model) if model else production_model_dir(settings)
    stream_up(settings, consumers, replicas, model_dir)
    status()


@stream_app.command()
@reports_errors
def down() -> None:
    """Stop the consumers, the coordinator and the Serve application."""
    from actors.pipeline import stream_down

    stream_down(load_settings())
    console.print("pipeline stopped")


@stream_app.command()
@reports_errors
def status() -> None:
    """Actors, partitions per actor, lag, beats/s, Serve replicas."""
    from actors.pipeline import stream_status

    state = stream_status(load_settings())
    if state is None:
        console.print("[red]the pipeline is not running[/] (`ecgstream stream up`)")
        raise typer.Exit(1)
    print_pipeline(state)


@stream_app.command()
@reports_errors
def pause() -> None:
    """Stop fetching after the batches in flight are written and committed (state is kept)."""
    import ray

    from actors.pipeline import connect, coordinator_handle

    connect(load_settings())
    ray.get(coordinator_handle().pause.remote(), timeout=120)
    console.print("pipeline paused (`ecgstream stream resume` to go on)")


@stream_app.command()
@reports_errors
def resume() -> None:
    """Fetch again; a consumer halted on a failure retrying cannot fix (see `stream status`)
    starts its partitions over from their committed offsets: run this once the cause is fixed."""
    import ray

    from actors.pipeline import connect, coordinator_handle

    connect(load_settings())
    ray.get(coordinator_handle().resume.remote(), timeout=120)
    status()


def print_pipeline(state: dict) -> None:
    table = Table(title="ecgstream pipeline")
    for column in (
        "consumer",
        "partitions",
        "lag",
        "devices",
        "beats/s",
        "beats",
        "dead",
        "retries",
    ):
        table.add_column(
            column, justify="right" if column not in ("consumer", "partitions") else "left"
        )
    for c in state["consumers"]:
        if "error" in c:
            table.add_row(c["name"], "-", "-", "-", "-", "-", "-", f"[red]{c['error']}[/]")
            continue
        table.add_row(
            c["name"],
            ",".join(str(p) for p in c["partitions"]),
            str(sum(c["lag"].values())),
            str(c["devices"]),
            f"{c['beats_per_s']:.0f}",
            str(c["beats"]),
            str(c["dead_letters"]),
            str(c["retries"]),
        )
    console.print(table)
    scaling = state.get("autoscaling") or {}
    if scaling.get("enabled"):
        last = scaling.get("last_decision")
        console.print(
            f"autoscaling: {len(state['consumers'])} consumers within "
            f"{scaling['min_consumers']}..{scaling['max_consumers']}, most-behind lag "
            f"{scaling.get('worst_lag_s') or 0:.1f} s"
            + (f"; last: {last['action']} to {last['size']} ({last['reason']})" if last else "")
        )
    for c in state["consumers"]:
        if c.get("halted"):
            console.print(
                f"[red]{c['name']} halted[/] (partitions {c['partitions']} not consumed): "
                f"{c['halted']}; fix the cause, then `ecgstream stream resume`"
            )
    if "monitor" in state:
        m = state["monitor"]
        console.print(
            f"monitor: {m['windows_received']} signal windows, {m.get('beats', 0)} beats from "
            f"{m['devices']} devices; devices in fault: {m.get('active_faults') or 'none'}; "
            f"data drift: {m.get('data_drift')} (max PSI {m.get('max_feature_psi', 0):.3f}); "
            f"prediction drift: {m.get('prediction_drift')} "
            f"(class-mix PSI {m.get('class_mix_psi', 0):.3f})"
        )
        if m.get("metrics_error"):
            console.print(f"[yellow]metrics: {m['metrics_error']}[/]")
    for name, app in state.get("serve", {}).items():
        console.print(f"Serve app {name}: {app['status']}, replicas {app['replicas']}")


@reports_errors
def replay(
    records: list[str] = typer.Option(..., help="records to play: --records R [R ...]"),
    data: Path | None = typer.Option(None, help="WFDB records (default: the configured data)"),
    patients: int = typer.Option(1, min=1, help="simulated patients (devices)"),
    speed: float = typer.Option(1.0, min=0.0, help="x real time; 0 = as fast as possible"),
    chunk_s: float = typer.Option(1.0, min=0.05, help="seconds of signal per message"),
    duration: float | None = typer.Option(None, min=0.1, help="seconds of signal per device"),
    prefix: str = typer.Option("dev", help="device id prefix"),
    session: str = typer.Option(
        "boot-1", help="the devices' boot session: another value plays a reboot (counters from 0)"
    ),
) -> None:
    """Publish records to `ecg.samples` the way bedside devices would (wire version 2, each
    chunk signed with its device's key where this deployment's fleet secret is at hand)."""
    from ecgstream.io.device_simulator import replay as run_replay

    settings = load_settings()
    stats = asyncio.run(
        run_replay(
            settings,
            data or settings.records_dir,
            records,
            patients,
            speed,
            chunk_s=chunk_s,
            duration_s=duration,
            prefix=prefix,
            session=session,
        )
    )
    console.print(
        f"published {stats.chunks} chunks ({stats.bytes / 1e6:.1f} MB) for "
        f"{len(stats.devices)} devices in {stats.seconds:.1f} s"
    )
