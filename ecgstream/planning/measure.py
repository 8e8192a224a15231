"""`ecgstream plan --measure`: the benchmarks the planner reads, re-run on this machine.

Offline (always): bandwidth and the edge runner. With the local stack (`--measure-stack`): the
REST API and the streaming pipeline with its real-time search, which take the stack's cores for
about 15 minutes. Each writes the same JSON as its `ecgstream bench ...` command.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecgstream.settings import Settings, load_settings

EDGE_RECORDS = ("119", "208", "101", "203")  # normal, PVC-rich, noisy, arrhythmic
PIPELINE_RECORDS = ("119", "208", "101", "106", "203", "223")


def measure_here(
    out_dir: Path,
    *,
    with_stack: bool = False,
    settings: Settings | None = None,
    edge_records: tuple[str, ...] = EDGE_RECORDS,
    on_step: Callable[[str], None] = lambda step: None,
) -> dict[str, Path]:
    """Run the benchmarks into `out_dir`; returns benchmark -> file written."""
    from ecgstream.benchmarks.bandwidth import bench_bandwidth
    from ecgstream.benchmarks.edge import bench_edge
    from ecgstream.edge.export import export_bundle

    settings = settings or load_settings()
    written: dict[str, Path] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    on_step("measuring bandwidth per patient (offline)")
    written["bench_bandwidth"] = _write(
        out_dir, "bench_bandwidth", bench_bandwidth(settings.records_dir, PIPELINE_RECORDS)
    )
    on_step(f"measuring the edge runner on {len(edge_records)} records (offline)")
    with tempfile.TemporaryDirectory(prefix="ecgstream-plan-") as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(None, bundle)
        written["bench_edge"] = _write(
            out_dir, "bench_edge", bench_edge(bundle, settings.records_dir, edge_records)
        )
    if with_stack:
        from actors.pipeline import connect, stream_down, stream_up
        from ecgstream.benchmarks.api import bench_api
        from ecgstream.benchmarks.pipeline import RealtimeSearch, Workload, bench_pipeline

        on_step("measuring the REST API against its baseline (20 s each)")
        written["bench_api"] = _write(
            out_dir, "bench_api", bench_api(settings, settings.records_dir, 20.0, 8, 2)
        )
        on_step("measuring the pipeline: throughput, real-time capacity, latency")
        connect(settings)
        stream_up(settings, consumers=settings.local.ray_num_cpus, replicas=1)
        try:
            result = asyncio.run(
                bench_pipeline(
                    settings,
                    Workload(PIPELINE_RECORDS, 60, 300.0),
                    RealtimeSearch(250, 4000, 120.0),
                    60.0,
                    repeats=2,
                    on_step=on_step,
                )
            )
        finally:
            stream_down(settings)
        written["bench_pipeline"] = _write(out_dir, "bench_pipeline", result)
    return written


def _write(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
