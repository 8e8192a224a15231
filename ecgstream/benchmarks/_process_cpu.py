"""CPU seconds of the local stack's processes by role, from /proc: where a bench's cores went.

The pipeline's roles are processes on one machine in the local stack (Ray names its workers
`ray::<Actor>`), so the kernel's per-process accounting answers "how much CPU did the monitor
use next to a consumer" without instrumenting anything. On another OS, or for a remote Ray
cluster whose workers are not visible here, `CpuMeter` reports nothing (None).
"""

from __future__ import annotations

import os
from pathlib import Path

# (role, what its command line contains), first match wins
ROLES: tuple[tuple[str, str], ...] = (
    ("consumer", "ray::ConsumerActor"),
    ("classifier", "ray::ServeReplica"),
    ("monitor", "ray::MonitorActor"),
    ("coordinator", "ray::Coordinator"),
    ("edge_ingest", "ray::EdgeIngestActor"),
    ("serve_control", "ray::ServeController"),
    ("serve_proxy", "ray::ProxyActor"),
    ("kafka", "kafka.Kafka"),
    ("postgres", "postgres"),
    ("prometheus", "prometheus"),
    ("ray_system", "raylet"),
    ("ray_system", "gcs_server"),
    ("ray_system", "ray/dashboard"),
    ("ray_system", "log_monitor"),
    ("ray_system", "ray::"),
)

PROC = Path("/proc")


def _role(cmdline: str) -> str | None:
    return next((role for role, marker in ROLES if marker in cmdline), None)


def snapshot() -> dict[int, tuple[str, float]] | None:
    """pid -> (role, CPU seconds so far) for every process of a known role; None without /proc."""
    if not (PROC / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            role = _role(cmdline)
            if role is None:
                continue
            # fields after the command name (which may hold spaces): utime is the 12th, stime 13th
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            found[int(entry.name)] = (role, (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return found


class CpuMeter:
    """CPU seconds per role between `start` and `stop`, and per process of a role (a process
    started meanwhile counts from zero; one that ended meanwhile is not counted). `only`
    restricts it to some processes."""

    def __init__(self, only: set[int] | None = None) -> None:
        self._only = only
        self._before: dict[int, tuple[str, float]] | None = None
        self.seconds: dict[str, float] | None = None
        self.processes: dict[str, int] = {}

    def start(self) -> CpuMeter:
        self._before = snapshot()
        return self

    def stop(self) -> dict[str, float] | None:
        after = snapshot()
        if self._before is None or after is None:
            return None
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        for pid, (role, cpu) in after.items():
            if self._only is not None and pid not in self._only:
                continue
            used = cpu - self._before.get(pid, (role, 0.0))[1]
            totals[role] = totals.get(role, 0.0) + used
            if used > 0:
                counts[role] = counts.get(role, 0) + 1
        self.seconds = {role: round(s, 2) for role, s in sorted(totals.items())}
        self.processes = counts
        return self.seconds

    def per_process(self, role: str) -> float | None:
        """The role's CPU seconds per busy process (e.g. per consumer)."""
        if self.seconds is None or not self.processes.get(role):
            return None
        return self.seconds.get(role, 0.0) / self.processes[role]


def monitor_vs_consumer(meter: CpuMeter) -> float | None:
    """The monitor's CPU over one consumer's (the issue's goal: at most a quarter)."""
    consumer = meter.per_process("consumer")
    if meter.seconds is None or not consumer:
        return None
    return round(meter.seconds.get("monitor", 0.0) / consumer, 3)
