"""A server process the local stack started itself, tracked by a pid file in the state dir.

`down` must stop only what `up` started: a pid file alone is not enough (pids are reused), so the
pid file also records a marker that must appear in the process's command line.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cluster.state import ComponentStatus
from ecgstream.errors import StackError


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a string that must be in /proc/<pid>/cmdline for the pid to be ours
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 30.0

    def pid(self) -> int | None:
        """The pid if the process we started is still running, else None."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        if self.marker not in cmdline or _is_zombie(pid):
            return None
        return pid

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Start detached (own session, so our own Ctrl-C does not kill it) and record the pid."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                user=user,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        # between fork and exec /proc shows the parent's command line: wait for the exec, so a
        # check right after start does not mistake the child for a dead or foreign process
        deadline = time.monotonic() + 10
        while self.pid() is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return process.pid

    def exited_early(self) -> bool:
        return self.pid() is None

    def kill_leftover_group(self) -> None:
        """SIGKILL what the last start left behind after its leader died (a server that
        spawns helpers in its session, as `ray start` does, can exit and leave them)."""
        try:
            pgid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        if self.pid() is None and _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def stop(self) -> bool:
        """Stop our process (graceful signal, then SIGKILL after the timeout). True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout_s
        # wait for the process and the helpers it spawned (its process group: we started it in
        # its own session), then SIGKILL whatever is left of the group
        while time.monotonic() < deadline and (_alive(pid) or _group_alive(pid)):
            time.sleep(0.1)
        if _alive(pid) or _group_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL our process and its group at once, as a power cut or the OOM killer would
        (chaos tests): no shutdown work runs. True if it ran."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (_alive(pid) or _group_alive(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def fail(self, message: str) -> StackError:
        return StackError(self.name, message, self.log_file)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in {"Z", "X"}


def service_user(preferred: str) -> str | None:
    """The OS user to run a server as: `preferred` when we are root (servers refuse root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(preferred)
    except KeyError:
        raise StackError(
            "system", f"running as root but the '{preferred}' user does not exist"
        ) from None
    return preferred


def ensure_ports_free(component: str, ports: dict[str, int]) -> None:
    """Refuse to start when a port is taken: readiness checks would talk to the wrong server."""
    for setting, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise StackError(
                    component,
                    f"port {port} is already in use by another process; stop it or set "
                    f"ECGSTREAM_LOCAL__{setting.upper()} to a free port",
                ) from None


def check_traversable(path: Path, user: str | None) -> None:
    """Fail clearly if `user` could not reach `path` (every parent needs o+x or ownership)."""
    if user is None:
        return
    uid = pwd.getpwnam(user).pw_uid
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        info = parent.stat()
        if info.st_uid != uid and not info.st_mode & 0o001:
            raise StackError(
                "system",
                f"the '{user}' user cannot enter {parent} (mode {oct(info.st_mode & 0o777)}); "
                f"use a state dir it can reach, or chmod o+x {parent}",
            )


def chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout_s: float,
    process: ManagedProcess | None = None,
    what: str,
    interval_s: float = 0.5,
) -> None:
    """Poll `check()` until it returns True; fail early if the watched process died."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.exited_early():
            raise process.fail(f"exited while waiting for {what}:\n{process.log_tail()}")
        try:
            if check():
                return
        except Exception as exc:
            last_error = exc
        time.sleep(interval_s)
    detail = f" (last error: {last_error})" if last_error else ""
    name = process.name if process else what
    raise StackError(
        name,
        f"not ready after {timeout_s:.0f} s: {what}{detail}",
        process.log_file if process else None,
    )


def probe_status(
    process: ManagedProcess, endpoint: str, check: Callable[[], bool], *, ok: str, failed: str
) -> ComponentStatus:
    """A component's status: not running, or running and answering `check` (`ok`) or not
    (`failed`, with the exception's type when the check raised)."""
    pid = process.pid()
    healthy, detail = False, "not running"
    if pid is not None:
        try:
            healthy = check()
            detail = ok if healthy else failed
        except Exception as exc:
            detail = f"{failed}: {type(exc).__name__}"
    return ComponentStatus(process.name, pid, endpoint, healthy, detail, process.log_file)
