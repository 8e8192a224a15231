"""The full `make demo`: real ECG streamed through the running pipeline, watched live, then
summarised in a table and an HTML report with an ECG strip per patient."""

from __future__ import annotations

import asyncio
import base64
import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ecgstream.io.device_keys import device_signer
from ecgstream.io.device_simulator import ReplayDevice, ReplayStats, malformed_messages, replay
from ecgstream.io.kafka import make_producer
from ecgstream.plots import plot_strip
from ecgstream.records import load_record, load_reference_beats
from ecgstream.settings import Settings

DEMO_RECORDS = ("119", "208", "101", "106", "203", "223", "201", "118", "109", "207", "114", "124")


@dataclass
class DemoState:
    started: float = field(default_factory=time.monotonic)
    published: int = 0
    beats: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    alarms: list[tuple[str, str, str, str]] = field(default_factory=list)  # time, device, kind, sev
    alarm_count: int = 0
    alarm_kinds: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, severity)
    dead_letters: int = 0
    lag: int = 0
    beats_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    monitor: dict[str, Any] = field(default_factory=dict)
    unanalysable_beats: int = 0  # beats cut while a sensor fault made the ECG unanalysable


async def _poll(conn: asyncpg.Connection, prefix: str, state: DemoState) -> None:
    rows = await conn.fetch(
        "SELECT label, count(*) AS n FROM beats WHERE device_id LIKE $1 GROUP BY label",
        f"{prefix}-%",
    )
    state.classes = {r["label"]: r["n"] for r in rows}
    state.beats = sum(state.classes.values())
    state.unanalysable_beats = await conn.fetchval(
        "SELECT count(*) FROM beats WHERE device_id LIKE $1 AND signal_fault IS NOT NULL",
        f"{prefix}-%",
    )
    latency = await conn.fetchrow(
        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
           FROM beats WHERE device_id LIKE $1 AND inserted_at > now() - interval '30 seconds'""",
        f"{prefix}-%",
    )
    state.p50_ms, state.p99_ms = latency["p50"], latency["p99"]
    alarms = await conn.fetch(
        """SELECT start_time, device_id, kind, severity FROM alarms WHERE device_id LIKE $1
           ORDER BY inserted_at DESC LIMIT 6""",
        f"{prefix}-%",
    )
    kinds = await conn.fetch(
        """SELECT kind, severity, count(*) AS n FROM alarms WHERE device_id LIKE $1
           GROUP BY kind, severity""",
        f"{prefix}-%",
    )
    state.alarm_kinds = {(r["kind"], r["severity"]): r["n"] for r in kinds}
    state.alarm_count = sum(state.alarm_kinds.values())
    state.alarms = [
        (a["start_time"].strftime("%H:%M:%S"), a["device_id"], a["kind"], a["severity"])
        for a in alarms
    ]


def alarm_priority(item: tuple[tuple[str, str], int]) -> tuple[int, str]:
    (kind, severity), _ = item
    return ({"high": 0, "medium": 1, "low": 2}.get(severity, 3), kind)


def _view(state: DemoState, devices: int, duration_s: float) -> Group:
    elapsed = time.monotonic() - state.started
    head = Table.grid(padding=(0, 3))
    for _ in range(4):
        head.add_column()
    head.add_row(
        f"[bold]{devices}[/] patients",
        f"elapsed [bold]{elapsed:5.0f}[/] / {duration_s:.0f} s",
        f"chunks published [bold]{state.published}[/]",
        f"lag [bold]{state.lag}[/] messages",
    )
    latency = (
        f"latency p50 [bold]{state.p50_ms:.0f}[/] ms, p99 [bold]{state.p99_ms:.0f}[/] ms"
        if state.p50_ms is not None
        else "latency -"
    )
    head.add_row(
        f"beats stored [bold]{state.beats}[/]",
        f"beats/s [bold]{state.beats_per_s:.0f}[/]",
        latency,
        f"dead letters [bold]{state.dead_letters}[/]",
    )
    head.add_row(*_monitor_cells(state.monitor))
    head.add_row(
        f"alarms inhibited [bold]{state.monitor.get('alarms_inhibited', 0)}[/]",
        f"beats unanalysable [bold]{state.unanalysable_beats}[/]",
        "(cannot analyse ECG: lead off, clipping, noise)",
        "",
    )
    classes = Table(title="beat classes", min_width=40)
    for name in ("N", "S", "V", "F"):
        classes.add_column(name, justify="right")
    classes.add_row(*(str(state.classes.get(name, 0)) for name in ("N", "S", "V", "F")))
    by_kind = ", ".join(
        f"{kind} {n}" for (kind, _), n in sorted(state.alarm_kinds.items(), key=alarm_priority)
    )
    alarms = Table(
        title=f"latest alarms ({state.alarm_count} in all: {by_kind or 'none yet'})", min_width=60
    )
    for column in ("time", "device", "alarm", "severity"):
        alarms.add_column(column)
    for row in state.alarms:
        alarms.add_row(*row)
    return Group(head, classes, alarms)


def _monitor_cells(m: dict[str, Any]) -> tuple[str, str, str, str]:
    """Signal quality and drift, from the monitor actor's summary."""
    if not m:
        return ("signal quality -", "data drift -", "prediction drift -", "")
    faults = m.get("active_faults") or {}
    quality = (
        "signal quality [green]ok[/]"
        if not faults
        else "signal quality [red]"
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(faults.items()))
        + "[/]"
    )

    def flag(on: bool) -> str:
        return "[red]DRIFT[/]" if on else "[green]ok[/]"

    return (
        quality,
        f"data drift {flag(m.get('data_drift', False))} (PSI {m.get('max_feature_psi', 0):.2f})",
        f"prediction drift {flag(m.get('prediction_drift', False))} "
        f"(mix PSI {m.get('class_mix_psi', 0):.2f})",
        f"median HR [bold]{m['median_heart_rate_bpm']:.0f}[/] bpm"
        if m.get("median_heart_rate_bpm")
        else "",
    )


async def run_live_demo(
    settings: Settings,
    console: Console,
    *,
    patients: int,
    duration_s: float,
    speed: float,
    status: Callable[[], dict[str, Any]],
) -> tuple[str, ReplayStats, DemoState]:
    prefix = f"demo{time.strftime('%H%M%S')}"
    state = DemoState()
    # a few malformed messages, as a faulty device would send: they must end in ecg.deadletter
    producer = make_producer(settings, "device")
    await producer.start()
    try:
        for _name, payload in malformed_messages():
            if len(payload) < 1024 * 1024:
                await producer.send_and_wait(settings.topics.samples, payload, key=b"dev-bad")
    finally:
        await producer.stop()

    def on_tick(tick: int, stats: ReplayStats) -> None:
        state.published = stats.chunks

    sensor = asyncio.create_task(_faulty_sensor(settings, prefix, duration_s, speed))
    feeding = asyncio.create_task(
        replay(
            settings,
            settings.records_dir,
            DEMO_RECORDS,
            patients,
            speed,
            duration_s=duration_s,
            prefix=prefix,
            on_tick=on_tick,
        )
    )
    conn = await asyncpg.connect(settings.postgres_dsn())
    loop = asyncio.get_running_loop()
    try:
        with Live(
            _view(state, patients, duration_s), console=console, refresh_per_second=2
        ) as live:
            while not feeding.done() or state.lag > 0:
                await asyncio.sleep(1.0)
                await _poll(conn, prefix, state)
                pipeline = await loop.run_in_executor(None, status)
                consumers = [c for c in pipeline["consumers"] if "error" not in c]
                state.lag = sum(sum(c["lag"].values()) for c in consumers)
                state.beats_per_s = sum(c["beats_per_s"] for c in consumers)
                state.dead_letters = sum(c["dead_letters"] for c in consumers)
                state.monitor = pipeline.get("monitor") or {}
                live.update(_view(state, patients, duration_s))
                if (
                    feeding.done()
                    and time.monotonic() - state.started > duration_s / max(speed, 1e-9) + 60
                ):
                    break
            await asyncio.sleep(2.0)
            await _poll(conn, prefix, state)
            live.update(_view(state, patients, duration_s))
    finally:
        await conn.close()
    await sensor
    return prefix, await feeding, state


SENSOR_FAULT_AFTER_S = 30.0


def _faults(monitor: dict[str, Any]) -> str:
    raised = monitor.get("faults_raised") or {}
    return ", ".join(f"{fault.replace('_', ' ')} {n}" for fault, n in sorted(raised.items()))


async def _faulty_sensor(settings: Settings, prefix: str, duration_s: float, speed: float) -> None:
    """One more bedside device whose electrodes come off after 30 s (the amplifier pinned at a
    rail): one technical alarm (lead off), and no asystole for the silence (inhibited)."""
    import numpy as np

    from ecgstream.benchmarks.drift import Device, device_chunks
    from ecgstream.records import load_record

    record = load_record(settings.records_dir, "101")
    device = Device(
        f"{prefix}-sensor", record, "lead_off", inject_sample=int(SENSOR_FAULT_AFTER_S * record.fs)
    )
    producer = make_producer(settings, "device")
    signer = device_signer(settings)
    await producer.start()
    started = time.time()
    try:
        for tick, payload, _ in device_chunks(
            device, duration_s, np.random.default_rng(0), origin=started
        ):
            await producer.send(
                settings.topics.samples,
                payload,
                key=device.device_id.encode(),
                headers=signer.headers(device.device_id, payload) if signer else None,
            )
            await asyncio.sleep(max(0.0, started + (tick + 1) / max(speed, 1e-9) - time.time()))
    finally:
        await producer.stop()


async def write_report(
    settings: Settings, prefix: str, stats: ReplayStats, state: DemoState, out: Path
) -> Path:
    """An HTML page: the summary, then one strip per patient (predicted over reference)."""
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any I/O waits
    conn = await asyncpg.connect(settings.postgres_dsn())
    sections = []
    try:
        for device in stats.devices:
            sections.append(await _device_section(conn, settings, device, out))
    finally:
        await conn.close()
    classes = ", ".join(f"{k}: {v}" for k, v in sorted(state.classes.items()))
    kinds = ", ".join(
        f"{kind} ({severity}) {n}"
        for (kind, severity), n in sorted(state.alarm_kinds.items(), key=alarm_priority)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ecgstream demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
img{{width:100%;border:1px solid #ccc}} td,th{{padding:2px 10px;text-align:left}}</style></head>
<body><h1>ecgstream demo run {html.escape(prefix)}</h1>
<p>{len(stats.devices)} patients, {stats.chunks} chunks published in {stats.seconds:.0f} s;
{state.beats} beats classified ({html.escape(classes)}); {state.alarm_count} alarms
({html.escape(kinds) or "none"});
{state.dead_letters} malformed messages sent to the dead-letter topic.</p>
<p>Signal quality: {state.monitor.get("alarms_inhibited", 0)} arrhythmia alarms inhibited and
{state.unanalysable_beats} beats marked unanalysable while a sensor fault (lead off, clipping,
noise) made the ECG unanalysable; technical alarms raised by fault:
{html.escape(_faults(state.monitor)) or "none"}.</p>
{"".join(sections)}</body></html>"""
    path = out / "demo-report.html"
    path.write_text(page)
    return path


async def _device_section(
    conn: asyncpg.Connection,
    settings: Settings,
    device: ReplayDevice,
    out: Path,
) -> str:
    device_id = device.device_id
    rows = await conn.fetch(
        "SELECT sample_index, label FROM beats WHERE device_id = $1 ORDER BY sample_index",
        device_id,
    )
    alarms = await conn.fetch(
        "SELECT kind, start_sample, evidence FROM alarms WHERE device_id = $1 "
        "ORDER BY start_sample",
        device_id,
    )
    record = load_record(settings.records_dir, device.record)
    reference = load_reference_beats(settings.records_dir, device.record)
    lead = "MLII" if "MLII" in record.lead_names else record.lead_names[0]
    det = np.array([r["sample_index"] for r in rows], dtype=np.int64)
    labels = np.array([r["label"] for r in rows], dtype="<U1")
    # show the 20 s around the first alarm, else the first 20 s with beats
    start = device.start_sample / record.fs
    if alarms:
        start = max(start, alarms[0]["start_sample"] / record.fs - 5)
    spans = [
        (a["start_sample"] / record.fs, a["start_sample"] / record.fs + 4, a["kind"])
        for a in alarms
    ]
    image = plot_strip(
        record.lead(lead),
        record.fs,
        out / f"{device_id}.png",
        title=f"{device_id} (record {device.record}, {lead}): predicted above, reference below",
        start_s=start,
        duration_s=20.0,
        ref_samples=reference.samples,
        ref_labels=reference.labels,
        det_samples=det,
        det_labels=labels,
        alarms=spans,
    )
    encoded = base64.b64encode(image.read_bytes()).decode()
    counts = {k: int((labels == k).sum()) for k in ("N", "S", "V", "F")}
    alarm_text = ", ".join(sorted({a["kind"] for a in alarms})) or "none"
    return (
        f"<h2>{html.escape(device_id)}</h2><p>beats: {counts}; alarms: {html.escape(alarm_text)}"
        f"</p><img src='data:image/png;base64,{encoded}'/>"
    )
