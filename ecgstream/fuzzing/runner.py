"""`run_fuzz`: every target for its share of a time budget, under hypothesis and, where it is
installed, atheris (coverage-guided, in a subprocess beside the hypothesis run).

Hypothesis runs in batches (a fresh `@given` each, growing to MAX_BATCH examples, the last cut to
the time left) until the share is spent or a target fails; its `deadline` makes a slow call a
failure, so a near-hang is reported with the input that caused it. The summary is plain JSON:
per target, the calls made, how many were accepted, the rejections by reason, and each failure
with its (shrunk) input, cut short.
"""

from __future__ import annotations

import importlib.util
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from ecgstream.fuzzing._reporting import cut
from ecgstream.fuzzing._targets import Target, default_targets

ATHERIS_MIN_S = 10.0  # below this per target, atheris spends its time starting up
MAX_BATCH = 500  # batches grow 20, 40, ... to this; with a seed, batch k is the same each run

Progress = Callable[[str, dict[str, Any]], None]


class _Tally:
    def __init__(self) -> None:
        self.examples = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.failures: list[dict[str, str]] = []
        self.unreliable_timings = 0  # over the deadline once, not on the replay: load, not a hang

    def count(self, reason: str | None) -> None:
        self.examples += 1
        if reason is None:
            self.accepted += 1
        else:
            self.rejected[reason] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "accepted": self.accepted,
            "rejected": dict(self.rejected.most_common()),
            "failures": self.failures,
            "unreliable_timings": self.unreliable_timings,
        }


def _failure(exc: BaseException, example: Any, *, from_notes: bool = False) -> dict[str, str]:
    """One failure: the error and the input. Hypothesis calls the test with the shrunk input
    last, so `example` is it; of several distinct failures, each names its own in a note."""
    notes = [n for n in getattr(exc, "__notes__", ()) if "test case" in n or "example" in n]
    shown = notes[0] if from_notes and notes else repr(example)
    return {"error": cut(f"{type(exc).__name__}: {exc}"), "example": cut(shown)}


def _batch_seed(seed: int | None, name: str, batch: int) -> int | None:
    return None if seed is None else zlib.crc32(f"{seed}:{name}:{batch}".encode())


def hypothesis_batch(
    target: Target,
    max_examples: int,
    tally: _Tally,
    *,
    seed: int | None = None,
    deadline_ms: float = 500,
    database_dir: Path | None = None,
) -> None:
    """One hypothesis run of `target`; a failure (shrunk) is added to `tally.failures`."""
    last: list[Any] = [None]

    def body(value: Any) -> None:
        last[0] = value
        tally.count(target.check(value))

    test = settings(
        max_examples=max_examples,
        deadline=deadline_ms,
        database=DirectoryBasedExampleDatabase(database_dir / target.name)
        if database_dir
        else None,
        verbosity=Verbosity.normal,  # the shrunk example comes back as an exception note
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )(given(target.strategy())(body))
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    try:
        test()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseExceptionGroup as group:
        tally.failures += [_failure(exc, last[0], from_notes=True) for exc in group.exceptions]
    except BaseException as exc:
        if "Unreliable test timings" in str(exc):
            tally.unreliable_timings += 1
        else:
            tally.failures.append(_failure(exc, last[0]))


def _warm_up(target: Target, tally: _Tally) -> None:
    """Import what the target needs before the deadline applies (a first call may take
    seconds), on its seeds; they count as examples like any other."""
    for raw in target.seeds():
        value = target.from_bytes(raw)
        try:
            tally.count(target.check(value))
        except Exception as exc:
            tally.failures.append(_failure(exc, value))
            return


def _fuzz_target(
    target: Target,
    seconds: float,
    seed: int | None,
    deadline_ms: float,
    database_dir: Path | None,
    progress: Progress | None,
) -> dict[str, Any]:
    tally = _Tally()
    started = time.monotonic()
    end = started + seconds
    _warm_up(target, tally)
    size, batch = 20, 0
    while not tally.failures and (batch == 0 or time.monotonic() < end):  # one batch at least
        before, t0 = tally.examples, time.monotonic()
        batch_seed = _batch_seed(seed, target.name, batch)
        hypothesis_batch(
            target,
            size,
            tally,
            seed=batch_seed,
            deadline_ms=deadline_ms,
            database_dir=database_dir,
        )
        rate = (tally.examples - before) / max(time.monotonic() - t0, 1e-3)
        left = end - time.monotonic()
        batch += 1
        size = int(max(5, min(20 * 2 ** min(batch, 8), MAX_BATCH, rate * left)))
        if progress:
            progress(target.name, {"examples": tally.examples, "seconds_left": max(left, 0.0)})
    return {**tally.summary(), "seconds": round(time.monotonic() - started, 2)}


def atheris_version() -> str | None:
    if importlib.util.find_spec("atheris") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("atheris")
    except PackageNotFoundError:
        return "unknown version"


def _atheris_skip(target: Target, share: float) -> str | None:
    """Why a target gets no atheris pass (the child finds targets by name), or None."""
    registered = default_targets().get(target.name)
    if registered is None or registered.check is not target.check:
        return "skipped: not a registered target"
    if share < ATHERIS_MIN_S:
        return f"skipped: under {ATHERIS_MIN_S:g} s for this target"
    return None


def _failure_count(result: dict[str, Any]) -> int:
    pass_ = result.get("atheris")
    return len(result["failures"]) + (len(pass_["failures"]) if isinstance(pass_, dict) else 0)


def run_fuzz(
    minutes: float,
    seed: int | None = None,
    *,
    targets: Mapping[str, Target] | None = None,
    atheris: bool | None = None,
    deadline_ms: float = 500,
    database_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fuzz every target for an equal share of `minutes`; the JSON-able summary.

    `atheris=None` runs the atheris pass when the package is importable, beside hypothesis (a
    second core), each target's pass getting the same share of the time.
    """
    from ecgstream.fuzzing import _atheris_pass as atheris_pass

    chosen = dict(targets if targets is not None else default_targets())
    share = minutes * 60.0 / max(len(chosen), 1)
    version = atheris_version()
    use_atheris = version is not None and atheris is not False
    if atheris and version is None:
        raise RuntimeError("atheris was asked for but is not installed")
    started = time.monotonic()
    results: dict[str, Any] = {}
    for name, target in chosen.items():
        child, skipped = None, _atheris_skip(target, share)
        if use_atheris and skipped is None:
            child = atheris_pass.start(target.name, share, _batch_seed(seed, name, -1))
        results[name] = _fuzz_target(target, share, seed, deadline_ms, database_dir, progress)
        if child is not None:
            results[name]["atheris"] = child.finish()
        elif use_atheris:
            results[name]["atheris"] = skipped
    failures = sum(_failure_count(r) for r in results.values())
    return {
        "minutes": minutes,
        "seed": seed,
        "deadline_ms": deadline_ms,
        "seconds": round(time.monotonic() - started, 2),
        "hypothesis": hypothesis.__version__,
        "atheris": version if use_atheris else ("disabled" if version else "not installed"),
        "targets": results,
        "examples": sum(r["examples"] for r in results.values()),
        "failures": failures,
        "ok": failures == 0,
    }
