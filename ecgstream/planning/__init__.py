"""Choosing a deployment: `ecgstream plan` and the deployment guide, every number a measured
figure from the benchmarks' JSON with the formula that recomputes it."""

__all__ = [  # the public modules; others are private by their leading underscore
    "figures",
    "guide",
    "measure",
    "planner",
]
