"""`ecgstream bench pipeline` and `bench soak` at a small size on the real stack: every figure
is produced, nothing is lost or doubled, and the soak sees the pipeline's actors."""

from __future__ import annotations

from pathlib import Path

from actors.pipeline import coordinator_handle
from ecgstream.benchmarks.pipeline import RealtimeSearch, Workload, bench_pipeline
from ecgstream.benchmarks.soak import bench_soak
from ecgstream.settings import Settings

ISSUE_KEYS = {
    "bare_model_beats_per_s",
    "single_process_beats_per_s",
    "pipeline_beats_per_s",
    "realtime_patients",
    "latency_p50_ms",
    "latency_p99_ms",
    "lost",
    "duplicates",
    "compute_floor_beats_per_s",
}


async def test_bench_pipeline_reports_every_figure(pipeline: Settings) -> None:
    result = await bench_pipeline(
        pipeline,
        Workload(("119", "208", "101"), patients=4, duration_s=30),
        RealtimeSearch(start=10, maximum=20, seconds=12),
        latency_seconds=8,
        repeats=1,
    )
    assert set(result) >= ISSUE_KEYS
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert result["transactions"] is True
    assert result["pipeline_without_transactions_beats_per_s"] is None  # not asked for
    status = await coordinator_handle().status.remote()
    assert len(status["consumers"]) == 2, status
    assert all(c["transactions"] for c in status["consumers"]), status
    assert sorted(p for ps in status["assignment"].values() for p in ps) == status["partitions"]
    for key in ("bare_model_beats_per_s", "single_process_beats_per_s", "pipeline_beats_per_s"):
        assert result[key] > 0
    # the floor did the pipeline's work on the same workload: the same beats, one core x 2
    floor = result["details"]["compute_floor"]
    assert floor["beats"] == result["details"]["pipeline_runs"][0]["beats"] > 0
    assert floor["cores"] == 2
    assert result["compute_floor_beats_per_s"] == floor["beats_per_s"] > 0
    assert result["pipeline_vs_compute_floor"] > 0
    # 10 and 20 patients are far below this pipeline's capacity: both loads keep up
    runs = result["details"]["realtime_runs"]
    assert [r["patients"] for r in runs] == [10, 20], runs
    assert result["realtime_patients"] == 20, runs
    assert all(r["beats"] > 0 and r["drained_after_s"] < 30 for r in runs)
    latency = result["details"]["latency_load"]
    assert latency["patients"] == 10 and latency["beats"] > 0
    assert 0 < result["latency_p50_ms"] <= result["latency_p99_ms"] < 1500
    # where the cores went, per role, read from /proc: both consumers worked, the model ran
    cpu = result["details"]["pipeline_runs"][0]["cpu_seconds"]
    assert cpu["consumer"] > 0 and cpu["classifier"] > 0 and cpu["kafka"] > 0, cpu
    # the monitor's share is read at the largest load kept up with (20 patients here)
    assert result["monitor_vs_consumer_cpu"] == runs[-1]["monitor_vs_consumer_cpu"] is not None


async def test_bench_soak_samples_every_actor(pipeline: Settings, tmp_path: Path) -> None:
    result = await bench_soak(
        pipeline, minutes=0.75, patients=10, interval_s=3, plot=tmp_path / "memory.png"
    )
    assert len(result["samples"]) >= 10
    names = set(result["per_actor"])
    assert sum(name.startswith("ecgstream-consumer-") for name in names) == 2
    assert any("BeatClassifier" in name for name in names)
    consumer = next(a for n, a in result["per_actor"].items() if n.startswith("ecgstream-con"))
    assert consumer["warm_mb"] > 50 and consumer["flat"] is not None
    assert result["beats"] > 0
    assert (tmp_path / "memory.png").stat().st_size > 10_000


def test_bench_api_measures_the_api_and_the_baseline(pipeline: Settings, mitdb_dir: Path) -> None:
    from ecgstream.benchmarks.api import bench_api

    result = bench_api(pipeline, mitdb_dir, seconds=4, concurrency=2)
    for key in ("api", "baseline"):
        assert result[f"{key}_rps"] > 0 and result[f"{key}_errors"] == 0
        assert 0 < result[f"{key}_p50_ms"] <= result[f"{key}_p99_ms"]
