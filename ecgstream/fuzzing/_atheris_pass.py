"""The atheris pass: one target under libFuzzer's coverage-guided mutation, in a subprocess.

The child (`python -m ecgstream.fuzzing._atheris_pass TARGET STATS_JSON [libFuzzer flags]`)
instruments ecgstream, serve_app and wfdb as it imports them, starts from the target's valid
seeds, and writes its counts to STATS_JSON every second (libFuzzer ends the process with
`exit()`, so nothing at shutdown can be relied on). A check's `FuzzBugError` ends the run as a
crash, a call over `-timeout` as a hang. `start` launches it, `Child.finish` reads what it left.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HANG_S = 5  # one call longer than this is a hang (libFuzzer's -timeout)
STARTUP_S = 6.0  # importing the API targets (ray) before fuzzing starts
_INSTRUMENTED = ["ecgstream", "serve_app", "wfdb"]


class Child:
    """A running atheris pass and the files it reports through."""

    def __init__(
        self, proc: subprocess.Popen[bytes], tmp: tempfile.TemporaryDirectory[str], seconds: float
    ) -> None:
        self.proc = proc
        self._tmp = tmp
        self.workdir = Path(tmp.name)
        self.deadline = time.monotonic() + seconds + STARTUP_S + 60

    def finish(self) -> dict[str, Any]:
        """Wait for the pass and summarise it (the temporary directory is removed)."""
        from ecgstream.fuzzing._reporting import cut

        try:
            rc = self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        log = (self.workdir / "libfuzzer.log").read_text(errors="replace")
        stats_path = self.workdir / "stats.json"
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        done = re.search(r"Done (\d+) runs in (\d+) second", log)
        result = {
            "runs": int(done.group(1)) if done else stats.get("examples", 0),
            "accepted": stats.get("accepted", 0),
            "rejected": stats.get("rejected", {}),
            "failures": list(stats.get("failures", [])),
            "exit": rc,
        }
        if rc != 0 and not result["failures"]:
            summary = re.findall(r"SUMMARY: libFuzzer: (.*)", log)
            crash = sorted(self.workdir.glob("crash-*")) + sorted(self.workdir.glob("timeout-*"))
            result["failures"].append(
                {
                    "error": cut(f"libFuzzer exit {rc}: {summary[-1] if summary else log[-200:]}"),
                    "example": cut(repr(crash[0].read_bytes())) if crash else "",
                }
            )
        self._tmp.cleanup()
        return result


def start(target: str, seconds: float, seed: int | None) -> Child:
    """Launch the pass for `target` with about `seconds` of fuzzing after its start-up."""
    from ecgstream.fuzzing._targets import default_targets

    tmp = tempfile.TemporaryDirectory(prefix=f"ecgstream-atheris-{target}-")
    workdir = Path(tmp.name)
    corpus = workdir / "corpus"
    corpus.mkdir()
    for i, raw in enumerate(default_targets()[target].seeds()):
        (corpus / f"seed-{i}").write_bytes(raw)
    fuzz_s = max(1, math.floor(seconds - STARTUP_S))
    flags = [
        f"-max_total_time={fuzz_s}",
        f"-timeout={HANG_S}",
        "-rss_limit_mb=4096",
        "-max_len=8192",
        f"-artifact_prefix={workdir}/",
        *([f"-seed={seed or 1}"] if seed is not None else []),
    ]
    cmd = [sys.executable, "-m", __name__, target, str(workdir / "stats.json"), *flags, str(corpus)]
    with (workdir / "libfuzzer.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return Child(proc, tmp, seconds)


def _write(path: Path, stats: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    tmp.replace(path)


def main(argv: list[str]) -> None:
    """The child: fuzz one target until libFuzzer's time limit ends the process."""
    import atheris

    name, stats_path, flags = argv[1], Path(argv[2]), argv[3:]
    with atheris.instrument_imports(include=_INSTRUMENTED):
        from ecgstream.fuzzing._reporting import cut
        from ecgstream.fuzzing._targets import default_targets

        target = default_targets()[name]
        for raw in target.seeds():  # imports everything the check needs, instrumented
            target.check(target.from_bytes(raw))

    rejected: Counter[str] = Counter()
    stats: dict[str, Any] = {"examples": 0, "accepted": 0, "rejected": rejected, "failures": []}
    last_write = [time.monotonic()]

    def one_input(data: bytes) -> None:
        value = target.from_bytes(data)
        try:
            reason = target.check(value)
        except BaseException as exc:
            error = cut(f"{type(exc).__name__}: {exc}")
            stats["failures"].append({"error": error, "example": cut(repr(value))})
            _write(stats_path, stats)
            raise
        stats["examples"] += 1
        if reason is None:
            stats["accepted"] += 1
        else:
            rejected[reason] += 1
        if time.monotonic() - last_write[0] > 1.0:
            last_write[0] = time.monotonic()
            _write(stats_path, stats)

    atheris.Setup([argv[0], *flags], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
