"""`ecgstream bench api`: the REST API against the baseline a user would write (one FastAPI +
PyTorch process, `baseline_api.py`), the same 10-second segments of real records, the same
concurrent load from a separate process. Prints requests/s and p50/p99 latency of both."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgstream.records import load_record
from ecgstream.settings import Settings

SEGMENT_S = 10.0
RECORDS = ("101", "106", "119", "208", "209", "223")


def segment_bodies(data_dir: Path, per_record: int = 4) -> list[bytes]:
    """10-second, two-lead segments of real records, as request bodies."""
    bodies = []
    for name in RECORDS:
        record = load_record(data_dir, name)
        n = int(SEGMENT_S * record.fs)
        x = np.stack([record.lead(lead) for lead in record.lead_names])
        for i in range(per_record):
            begin = (i + 1) * 60 * int(record.fs)
            body = {
                "fs": record.fs,
                "leads": list(record.lead_names),
                "samples": np.round(x[:, begin : begin + n], 4).tolist(),
            }
            bodies.append(json.dumps(body).encode())
    return bodies


async def _load(
    url: str, key: str, bodies: list[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        i = index
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/classify", content=bodies[i % len(bodies)], headers=headers
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            i += concurrency

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, client) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "rps": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if ms.size else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if ms.size else None,
        "requests": len(latencies),
        "errors": errors,
    }


def run_load(url: str, key: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """In a separate process: the client must not share the server's CPU accounting or GIL."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_load_sync, (url, key, bodies, concurrency, seconds))


def _load_sync(url: str, key: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    asyncio.run(_load(url, key, bodies[:2], concurrency, 2.0))  # warm-up
    return asyncio.run(_load(url, key, bodies, concurrency, seconds))


def _wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/docs", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up")
        time.sleep(0.5)


def _api_key(settings: Settings) -> str:
    from ecgstream.io.api_keys import create_key
    from ecgstream.io.db import with_connection

    return with_connection(
        settings, lambda conn: create_key(conn, "bench-api", requests_per_minute=10**9)
    )[1]


def bench_api(
    settings: Settings,
    data_dir: Path,
    seconds: float = 20.0,
    concurrency: int = 8,
    replicas: int = 1,
) -> dict[str, Any]:
    from actors.pipeline import api_down, api_up

    bodies = segment_bodies(data_dir)
    url = api_up(settings, None, replicas)
    key = _api_key(settings)
    time.sleep(5.5)  # the API's key cache
    try:
        api = run_load(url, key, bodies, concurrency, seconds)
    finally:
        api_down(settings)
    port = settings.local.serve_http_port + 1
    baseline_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            *("-m", "uvicorn", "ecgstream.benchmarks._baseline_api:app"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--log-level", "warning"),
        ],
        env={**os.environ, "ECGSTREAM_BASELINE_KEY": key},
    )
    try:
        _wait_http(baseline_url)
        baseline = run_load(baseline_url, key, bodies, concurrency, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "api_rps": api["rps"],
        "api_p50_ms": api["p50_ms"],
        "api_p99_ms": api["p99_ms"],
        "baseline_rps": baseline["rps"],
        "baseline_p50_ms": baseline["p50_ms"],
        "baseline_p99_ms": baseline["p99_ms"],
        "rps_ratio": round(api["rps"] / baseline["rps"], 3) if baseline["rps"] else None,
        "segment_s": SEGMENT_S,
        "concurrency": concurrency,
        "api_replicas": replicas,
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "api_errors": api["errors"],
        "baseline_errors": baseline["errors"],
        "api_requests": api["requests"],
        "baseline_requests": baseline["requests"],
    }
