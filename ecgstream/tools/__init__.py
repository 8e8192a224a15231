"""Evidence and operator tools (top layer): the benchmarks, the planner and deployment guide, the
demo, the privacy audit, fuzzing."""

__all__ = [  # the public modules; others are private by their leading underscore
    "baseline_api",
    "bench_api",
    "bench_bandwidth",
    "bench_compute_floor",
    "bench_drift",
    "bench_edge",
    "bench_nodes",
    "bench_pipeline",
    "bench_soak",
    "deployment_guide",
    "evidence",
    "fuzz",
    "live_demo",
    "plan",
    "plan_measure",
    "privacy_audit",
    "process_cpu",
    "reference",
]
