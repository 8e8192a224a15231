"""`ecgstream audit privacy`: no patient or device identifier, no raw sample outside Kafka and
PostgreSQL (logs, metric labels, Prometheus series). Exit 1 when anything is found."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from ecgstream.cli._common import console, err_console, reports_errors

if TYPE_CHECKING:
    from ecgstream.audit import AuditReport

audit_app = typer.Typer(help="Audits of a running stack.")

SHOWN_FINDINGS = 50


def _replay_ids(spec: str) -> list[str]:
    """`PREFIX:N` -> the device ids a replay with that prefix and N patients uses."""
    prefix, _, count = spec.rpartition(":")
    if not prefix or not count.isdigit():
        raise typer.BadParameter(f"{spec!r} is not PREFIX:N", param_hint="--replay-devices")
    return [f"{prefix}-{i:04d}" for i in range(int(count))]


@audit_app.command()
@reports_errors
def privacy(
    logs: list[Path] = typer.Option([], "--logs", help="a log directory (or file); repeatable"),
    metrics_url: list[str] = typer.Option(
        [], "--metrics-url", help="a Prometheus text exposition endpoint; repeatable"
    ),
    prometheus: str | None = typer.Option(None, "--prometheus", help="Prometheus server URL"),
    ids: list[str] = typer.Option([], "--id", help="an identifier that must not appear"),
    id_patterns: list[str] = typer.Option(
        [], "--id-pattern", help="a regex of identifiers that must not appear"
    ),
    replay_devices: list[str] = typer.Option(
        [],
        "--replay-devices",
        help="PREFIX:N: the device ids and patient refs of a replay of N patients",
    ),
    json_path: Path | None = typer.Option(None, "--json", help="write the report here"),
) -> None:
    """Scan logs, metrics and Prometheus series for identifiers and raw samples."""
    import httpx

    import ecgstream.audit as pa

    devices = [device for spec in replay_devices for device in _replay_ids(spec)]
    if devices:
        exact, patterns = pa.workload_identifiers(devices)
        needles = pa.Needles(exact=(*exact, *ids), patterns=(*patterns, *id_patterns))
    else:
        needles = pa.Needles(exact=tuple(ids), patterns=tuple(id_patterns))
    if not needles.exact and not needles.patterns:
        err_console.print("[yellow]no --id, --id-pattern or --replay-devices: samples only[/]")
    if not logs and not metrics_url and not prometheus:
        raise typer.BadParameter("nothing to scan: give --logs, --metrics-url or --prometheus")
    missing = [str(p) for p in logs if not p.exists()]
    if missing:
        raise typer.BadParameter(f"not found: {', '.join(missing)}", param_hint="--logs")

    reports = []
    try:
        if logs:
            with console.status("scanning logs"):
                reports.append(pa.scan_log_roots(logs, needles))
        for url in metrics_url:
            response = httpx.get(url, timeout=30.0)
            response.raise_for_status()
            reports.append(pa.scan_exposition(response.text, url, needles))
        if prometheus:
            reports.append(pa.scan_prometheus(prometheus, needles))
    except (httpx.HTTPError, RuntimeError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    report = pa.merge(*reports)

    if json_path is not None:
        json_path.write_text(report.to_json() + "\n")
    _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: AuditReport) -> None:
    scanned = ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in sorted(report.scanned.items()))
    console.print(f"scanned: {scanned or 'nothing'}")
    if report.ok:
        console.print("[bold green]privacy audit passed[/]: no identifier, no raw samples")
        return
    table = Table(title="privacy audit findings (redacted)")
    for column in ("kind", "location", "excerpt"):
        table.add_column(column, overflow="fold")
    for finding in report.findings[:SHOWN_FINDINGS]:
        table.add_row(finding.kind, Text(finding.location), Text(finding.excerpt))
    console.print(table)
    total = len(report.findings) + report.suppressed
    hidden = total - min(len(report.findings), SHOWN_FINDINGS)
    if hidden:
        console.print(f"... and {hidden} more (see --json)")
    console.print(f"[bold red]privacy audit failed[/]: {total} finding(s)")
