"""The `ecgstream` command: the Typer app with every command module's commands added."""

from __future__ import annotations

import sys

import typer

from ecgstream.cli import (
    api_cmd,
    audit_cmd,
    bench_cmd,
    cluster_cmd,
    core_cmd,
    data_cmd,
    db_cmd,
    demo_cmd,
    devices_cmd,
    edge_cmd,
    fuzz_cmd,
    plan_cmd,
    registry_cmd,
    release_cmd,
    stream_cmd,
)
from ecgstream.cli.common import console, err_console, reports_errors

__all__ = ["app", "console", "err_console", "expand_multi_value_options", "main", "reports_errors"]

app = typer.Typer(
    name="ecgstream",
    help="Real-time ECG arrhythmia detection on Kafka, Ray and PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.add_typer(cluster_cmd.cluster_app, name="cluster")
app.add_typer(data_cmd.data_app, name="data")
app.add_typer(db_cmd.db_app, name="db")
app.add_typer(bench_cmd.bench_app, name="bench")
app.add_typer(stream_cmd.stream_app, name="stream")
app.add_typer(release_cmd.release_app, name="release")
app.add_typer(registry_cmd.registry_app, name="registry")
app.add_typer(api_cmd.api_app, name="api")
app.add_typer(api_cmd.keys_app, name="api-keys")
app.add_typer(edge_cmd.edge_app, name="edge")
app.add_typer(devices_cmd.devices_app, name="devices")
app.add_typer(audit_cmd.audit_app, name="audit")
app.command("tune")(registry_cmd.tune)
app.command("replay")(stream_cmd.replay)
app.command("demo")(demo_cmd.demo)
app.command("train")(core_cmd.train)
app.command("evaluate")(core_cmd.evaluate)
app.command("crossval")(core_cmd.crossval)
app.command("noise-test")(core_cmd.noise_test)
app.command("fuzz")(fuzz_cmd.fuzz)
app.command("plan")(plan_cmd.plan)


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
