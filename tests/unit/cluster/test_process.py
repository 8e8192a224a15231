"""ManagedProcess against real child processes: pid files, pid reuse, stop escalation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_kill_leftover_group_clears_helpers_of_a_dead_leader(tmp_path: Path) -> None:
    """`ray start` can exit and leave its GCS behind: a retry must not find that one."""
    marker = str(tmp_path / "marker")
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
    )
    process = _process(tmp_path, marker)
    process.start([sys.executable, "-c", script, marker])
    deadline = time.monotonic() + 10
    while process.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    helper = int(process.log_file.read_text().split()[0])
    os.kill(helper, 0)  # the leader is gone, its helper is still there
    process.kill_leftover_group()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            break
        # the helper was reparented to init (or to us): reap it if it is ours
        time.sleep(0.05)
    else:
        raise AssertionError("the leftover helper was not killed")
    assert not process.pid_file.exists()


class _RaceLoggingProcess:
    """Stands in for `ray start` (pure retry logic): exits with Ray's registration race."""

    def __init__(self, log: str) -> None:
        self.log = log
        self.cleared = 0

    def log_tail(self, lines: int = 20) -> str:
        return self.log

    def kill_leftover_group(self) -> None:
        self.cleared += 1


def _ray_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcomes: list[bool], log: str
) -> tuple[object, list[int]]:
    from cluster import _ray_head as ray_head
    from cluster.state import StatePaths
    from ecgstream.errors import StackError
    from ecgstream.settings import Settings

    head = ray_head.RayHead(Settings(state_dir=tmp_path), StatePaths(tmp_path))
    head.process = _RaceLoggingProcess(log)  # type: ignore[assignment]
    starts: list[int] = []
    monkeypatch.setattr(head, "start", lambda: starts.append(1))

    def wait_until(*args: object, **kwargs: object) -> None:
        if not outcomes.pop(0):
            raise StackError("ray", "exited while waiting for `ray status`")

    monkeypatch.setattr(ray_head, "wait_until", wait_until)
    return head, starts


def test_ray_head_restarts_after_the_raylet_registration_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster._ray_head import STARTUP_RACE

    head, starts = _ray_head(tmp_path, monkeypatch, [False, True], f"Exception: {STARTUP_RACE}")
    head.wait_ready()  # type: ignore[attr-defined]
    assert starts == [1] and head.process.cleared == 1  # type: ignore[attr-defined]


def test_ray_head_gives_up_after_its_attempts_and_on_other_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster._ray_head import START_ATTEMPTS, STARTUP_RACE
    from ecgstream.errors import StackError

    head, starts = _ray_head(
        tmp_path, monkeypatch, [False] * START_ATTEMPTS, f"Exception: {STARTUP_RACE}"
    )
    with pytest.raises(StackError):
        head.wait_ready()  # type: ignore[attr-defined]
    assert len(starts) == START_ATTEMPTS - 1
    head, starts = _ray_head(tmp_path, monkeypatch, [False, True], "ValueError: bad flag")
    with pytest.raises(StackError):
        head.wait_ready()  # type: ignore[attr-defined]
    assert starts == []
