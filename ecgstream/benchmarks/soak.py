"""`ecgstream bench soak`: a long real-time replay that watches every actor's memory.

A leak in a long-lived actor (per-device state never dropped, an unbounded queue, a growing
cache) shows up only after many minutes of traffic, long after every test has passed. This
replays patients at 1x, samples the resident memory of every live actor of the cluster, and
compares the end of the run with the end of the warm-up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray

from ecgstream.benchmarks.pipeline import LagProbe, latency_percentiles, replay_realtime
from ecgstream.settings import Settings

WARMUP_FRACTION = 0.25  # the first quarter of the run is warm-up (imports, caches, arenas)
FLAT_TOLERANCE = 0.10  # an actor is flat if it grew by at most 10 % after the warm-up
FLAT_SLACK_MB = 20.0  # ... or by at most this much (allocator noise on small actors)


def _rss_mb(pid: int) -> float | None:
    """Resident memory from /proc (actors on this node; None for other nodes' pids)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def actor_memory(address: str) -> dict[str, float]:
    """Resident MB of every alive actor on this node, keyed by actor name (class if unnamed).
    `address` is the stack's GCS: the state API does not use the driver's connection, and
    guesses wrong when a second stack runs on the machine."""
    from ray.util.state import list_actors

    node = ray.get_runtime_context().get_node_id()
    out: dict[str, float] = {}
    for actor in list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=1000):
        if actor.node_id != node or actor.pid is None:
            continue
        rss = _rss_mb(actor.pid)
        if rss is not None:
            out[actor.name or f"{actor.class_name}-{actor.pid}"] = round(rss, 1)
    return out


def summarise(samples: list[dict[str, Any]], minutes: float) -> dict[str, Any]:
    """Per actor: memory at the end of warm-up and at the end, growth and slope after it."""
    warmup_s = WARMUP_FRACTION * minutes * 60
    names = sorted({name for s in samples for name in s["actors"]})
    per_actor: dict[str, Any] = {}
    for name in names:
        points = [(s["t_s"], s["actors"][name]) for s in samples if name in s["actors"]]
        after = [(t, mb) for t, mb in points if t >= warmup_s]
        if len(after) < 3:
            per_actor[name] = {"samples": len(points), "flat": None, "why": "too few samples"}
            continue
        times, mbs = np.array(after).T
        start, end = float(np.median(mbs[:3])), float(np.median(mbs[-3:]))
        slope = float(np.polyfit(times, mbs, 1)[0]) * 3600
        growth = end - start
        per_actor[name] = {
            "warm_mb": round(start, 1),
            "end_mb": round(end, 1),
            "growth_mb": round(growth, 1),
            "growth_pct": round(100 * growth / max(start, 1e-9), 1),
            "slope_mb_per_h": round(slope, 1),
            "flat": growth <= max(FLAT_TOLERANCE * start, FLAT_SLACK_MB),
        }
    judged = [a["flat"] for a in per_actor.values() if a["flat"] is not None]
    return {"per_actor": per_actor, "flat": bool(judged) and all(judged)}


async def bench_soak(
    settings: Settings,
    minutes: float,
    patients: int,
    interval_s: float = 10.0,
    plot: Path | None = None,
    on_sample: Callable[[float, dict[str, float]], None] = lambda t, m: None,
) -> dict[str, Any]:
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    seconds = minutes * 60
    feeding = asyncio.create_task(replay_realtime(settings, patients, seconds, prefix))
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    async with LagProbe(settings) as probe:
        while not feeding.done():
            t = time.monotonic() - started
            memory = await asyncio.to_thread(actor_memory, settings.ray_address)
            samples.append({"t_s": round(t, 1), "lag": await probe.lag(), "actors": memory})
            on_sample(t, memory)
            await asyncio.wait({feeding}, timeout=interval_s)
        published = await feeding
    await asyncio.sleep(3)
    latency = await latency_percentiles(settings, prefix)
    result = {
        "minutes": minutes,
        "patients": patients,
        "chunks": published.chunks,
        "beats": latency["beats"],
        "latency_p50_ms": None if latency["p50"] is None else round(latency["p50"], 1),
        "latency_p99_ms": None if latency["p99"] is None else round(latency["p99"], 1),
        "lag_max": max((s["lag"] for s in samples), default=None),
        **summarise(samples, minutes),
        "flat_definition": (
            f"after the warm-up (first {WARMUP_FRACTION:.0%} of the run), the median of the "
            f"last three samples is at most {FLAT_TOLERANCE:.0%} (or {FLAT_SLACK_MB:.0f} MB) "
            "above the median of the first three"
        ),
        "samples": samples,
    }
    if plot is not None:
        result["plot"] = str(plot_memory(samples, plot, WARMUP_FRACTION * seconds))
    return result


def plot_memory(samples: list[dict[str, Any]], path: Path, warmup_s: float) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    names = sorted({name for s in samples for name in s["actors"]})
    for name in names:
        points = [(s["t_s"] / 60, s["actors"][name]) for s in samples if name in s["actors"]]
        ax.plot(*zip(*points, strict=True), label=name.split("::")[-1][:40], linewidth=1.2)
    ax.axvspan(0, warmup_s / 60, color="#dddddd", alpha=0.5, label="warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title("Actor memory during the soak run")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=110)
    return path
