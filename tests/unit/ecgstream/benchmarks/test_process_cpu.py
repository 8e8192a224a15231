"""The per-role CPU meter of the benches, on real processes (no Ray needed: roles are found by
command line, as Ray names its workers)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ecgstream.benchmarks._process_cpu import CpuMeter, monitor_vs_consumer, snapshot

BUSY = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
BUSY += "time.sleep(1)"


@pytest.mark.skipif(snapshot() is None, reason="needs /proc (Linux)")
def test_a_busy_consumer_and_an_idle_monitor_are_told_apart() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY, "ray::ConsumerActor"])
    idle = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(2)", "ray::MonitorActor"]
    )
    meter = CpuMeter(only={busy.pid, idle.pid}).start()  # not a stack that may be running
    time.sleep(1.2)  # the busy one has used its 0.6 s; both still run
    seconds = meter.stop()
    busy.wait()
    idle.wait()
    assert seconds is not None
    assert 0.4 <= seconds["consumer"] <= 0.8, seconds
    assert seconds.get("monitor", 0.0) < 0.2, seconds
    assert meter.processes["consumer"] == 1
    ratio = monitor_vs_consumer(meter)
    assert ratio is not None and ratio < 0.3
