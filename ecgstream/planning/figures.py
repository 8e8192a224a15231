"""Measured figures with their provenance: every number the deployment planner prints is a
`Figure` read from a benchmark's JSON output, or arithmetic on such figures, and carries the
formula that recomputes it from those files (so a test can check every number it printed)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecgstream.errors import ConfigurationError

REPO_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
BENCHMARKS = ("bench_pipeline", "bench_api", "bench_edge", "bench_bandwidth", "bench_soak")


@dataclass(frozen=True)
class Figure:
    value: float
    formula: str  # `file.json:key/path` references, numbers, + - * / ceil() max()

    def _combine(self, other: Figure | float, op: str) -> Figure:
        right = other if isinstance(other, Figure) else constant(other)
        value = {
            "+": self.value + right.value,
            "-": self.value - right.value,
            "*": self.value * right.value,
            "/": self.value / right.value,
        }[op]
        return Figure(value, f"({self.formula} {op} {right.formula})")

    def __add__(self, other: Figure | float) -> Figure:
        return self._combine(other, "+")

    def __sub__(self, other: Figure | float) -> Figure:
        return self._combine(other, "-")

    def __mul__(self, other: Figure | float) -> Figure:
        return self._combine(other, "*")

    def __truediv__(self, other: Figure | float) -> Figure:
        return self._combine(other, "/")

    def __rmul__(self, other: float) -> Figure:
        return constant(other)._combine(self, "*")


def constant(value: float) -> Figure:
    """A number of the user's situation (patients, cores per node), not a measurement."""
    return Figure(float(value), repr(value))


def ceil(figure: Figure) -> Figure:
    return Figure(float(math.ceil(figure.value - 1e-9)), f"ceil({figure.formula})")


def at_least(floor: float, figure: Figure) -> Figure:
    return Figure(max(floor, figure.value), f"max({floor!r}, {figure.formula})")


class Evidence:
    """Benchmark outputs found in `directories`, the first holding a file winning."""

    def __init__(self, directories: Sequence[Path]) -> None:
        self.files: dict[str, Path] = {}
        for directory in reversed(list(directories)):
            for name in BENCHMARKS:
                path = directory / f"{name}.json"
                if path.exists():
                    self.files[name] = path
        self._loaded: dict[str, dict[str, Any]] = {}

    def data(self, benchmark: str) -> dict[str, Any]:
        if benchmark not in self.files:
            raise ConfigurationError(
                f"no {benchmark}.json in the evidence: run `ecgstream bench "
                f"{benchmark.removeprefix('bench_')} --json ...` or `ecgstream plan --measure`"
            )
        if benchmark not in self._loaded:
            self._loaded[benchmark] = json.loads(self.files[benchmark].read_text())
        return self._loaded[benchmark]

    def figure(self, benchmark: str, *path: str) -> Figure:
        value: Any = self.data(benchmark)
        for key in path:
            if not isinstance(value, dict) or key not in value or value[key] is None:
                raise ConfigurationError(f"{benchmark}.json has no {'/'.join(path)}")
            value = value[key]
        return Figure(float(value), f"{self.files[benchmark].name}:{'/'.join(path)}")

    def actor_memory(self, name_prefix: str) -> Figure:
        """Warm memory (MB) of the first actor of the soak run whose name starts so."""
        actors = self.data("bench_soak")["per_actor"]
        name = next((a for a in sorted(actors) if a.startswith(name_prefix)), None)
        if name is None:
            raise ConfigurationError(f"bench_soak.json measured no actor {name_prefix}*")
        return self.figure("bench_soak", "per_actor", name, "warm_mb")

    def source_map(self) -> dict[str, str]:
        """benchmark -> the file its figures came from."""
        return {name: str(path) for name, path in sorted(self.files.items())}
