"""The `ecgstream` command: the Typer app with every command module's commands added."""

from __future__ import annotations

import sys

import typer

from ecgstream.cli import (
    _api_cmd,
    _audit_cmd,
    _bench_cmd,
    _cluster_cmd,
    _core_cmd,
    _data_cmd,
    _db_cmd,
    _demo_cmd,
    _devices_cmd,
    _edge_cmd,
    _fuzz_cmd,
    _plan_cmd,
    _registry_cmd,
    _release_cmd,
    _station_cmd,
    _stream_cmd,
)
from ecgstream.cli._common import console, err_console, reports_errors

__all__ = ["app", "console", "err_console", "expand_multi_value_options", "main", "reports_errors"]

app = typer.Typer(
    name="ecgstream",
    help="Real-time ECG arrhythmia detection on Kafka, Ray and PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.add_typer(_cluster_cmd.cluster_app, name="cluster")
app.add_typer(_data_cmd.data_app, name="data")
app.add_typer(_db_cmd.db_app, name="db")
app.add_typer(_bench_cmd.bench_app, name="bench")
app.add_typer(_stream_cmd.stream_app, name="stream")
app.add_typer(_release_cmd.release_app, name="release")
app.add_typer(_registry_cmd.registry_app, name="registry")
app.add_typer(_api_cmd.api_app, name="api")
app.add_typer(_api_cmd.keys_app, name="api-keys")
app.add_typer(_edge_cmd.edge_app, name="edge")
app.add_typer(_devices_cmd.devices_app, name="devices")
app.add_typer(_audit_cmd.audit_app, name="audit")
app.add_typer(_station_cmd.station_app, name="station")
app.command("tune")(_registry_cmd.tune)
app.command("replay")(_stream_cmd.replay)
app.command("demo")(_demo_cmd.demo)
app.command("train")(_core_cmd.train)
app.command("evaluate")(_core_cmd.evaluate)
app.command("crossval")(_core_cmd.crossval)
app.command("noise-test")(_core_cmd.noise_test)
app.command("fuzz")(_fuzz_cmd.fuzz)
app.command("plan")(_plan_cmd.plan)


# options that take several values after one flag: `--records 101 106 108`
MULTI_VALUE_OPTIONS = frozenset({"--records"})


def expand_multi_value_options(argv: list[str]) -> list[str]:
    """Rewrite `--records a b c` as `--records a --records b --records c` (click's form)."""
    out: list[str] = []
    current: str | None = None
    for token in argv:
        if token.startswith("-"):
            current = token if token in MULTI_VALUE_OPTIONS else None
            out.append(token)
            continue
        if current is not None and out[-1] != current:
            out.append(current)
        out.append(token)
    return out


def main() -> None:
    app(args=expand_multi_value_options(sys.argv[1:]), prog_name="ecgstream")
