"""Monitor actor: receives per-window signal statistics from every consumer.

This issue's part is the plumbing: consumers send each batch's window statistics here, in
parallel with inference, and the monitor keeps per-device and fleet-wide sliding windows of
them. The drift and signal-quality analysis on top belongs to the monitoring work.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Any

import ray

from ecgstream.processing import WindowStats

MONITOR_NAME = "ecgstream-monitor"
WINDOWS_PER_DEVICE = 300  # ~5 minutes of 1-second chunks


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class MonitorActor:
    def __init__(self) -> None:
        self._per_device: dict[str, deque[WindowStats]] = defaultdict(
            lambda: deque(maxlen=WINDOWS_PER_DEVICE)
        )
        self._received = 0
        self._received_per_device: dict[str, int] = defaultdict(int)
        self._last_ms = 0.0

    def observe(self, windows: list[WindowStats]) -> int:
        for w in windows:
            self._per_device[w.device_id].append(w)
            self._received_per_device[w.device_id] += 1
        self._received += len(windows)
        self._last_ms = time.time() * 1000
        return self._received

    def summary(self) -> dict[str, Any]:
        latest = [d[-1] for d in self._per_device.values() if d]
        return {
            "windows_received": self._received,
            "devices": len(self._per_device),
            "flat_devices": sum(1 for w in latest if w.std_mv < 0.01),
            "last_received_ms": self._last_ms,
        }

    def received_for(self, device_prefix: str) -> int:
        """Windows received from devices whose id starts with the prefix (tests, demos)."""
        return sum(n for d, n in self._received_per_device.items() if d.startswith(device_prefix))
