"""ManagedProcess against real child processes: pid files, pid reuse, stop escalation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cluster._process import ManagedProcess


def _process(tmp_path: Path, marker: str, **kwargs: object) -> ManagedProcess:
    return ManagedProcess(
        name="sleeper",
        pid_file=tmp_path / "run" / "sleeper.pid",
        log_file=tmp_path / "logs" / "sleeper.log",
        marker=marker,
        **kwargs,  # type: ignore[arg-type]
    )


def test_start_pid_and_stop(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    process = _process(tmp_path, marker)
    pid = process.start([sys.executable, "-c", "import time; time.sleep(60)", marker])
    assert process.pid() == pid
    assert process.stop() is True
    assert process.pid() is None
    assert not process.pid_file.exists()
    assert process.stop() is False


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = _process(tmp_path, marker=str(tmp_path / "not-in-that-cmdline"))
        process.pid_file.parent.mkdir(parents=True)
        process.pid_file.write_text(f"{other.pid}\n")
        assert process.pid() is None
        assert process.stop() is False
        assert other.poll() is None, "stop() must never signal a process that is not ours"
    finally:
        other.kill()
        other.wait()


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    process = _process(tmp_path, marker, stop_timeout_s=1.0)
    pid = process.start([sys.executable, "-c", script, marker])
    deadline = time.monotonic() + 10
    while not process.log_file.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(process.log_file.read_text().split()[0])
    assert process.stop() is True
    for gone in (pid, child):
        try:
            os.kill(gone, 0)
        except ProcessLookupError:
            continue
        state = Path(f"/proc/{gone}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "Z", f"process {gone} survived stop()"


def test_log_tail_and_failure_message(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    process = _process(tmp_path, marker)
    process.start([sys.executable, "-c", "print('line one'); print('line two')", marker])
    deadline = time.monotonic() + 10
    while process.log_tail(1) != "line two" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.log_tail(1) == "line two"
    assert process.log_tail(5) == "line one\nline two"
    error = process.fail("did not start")
    assert "sleeper.log" in str(error)
