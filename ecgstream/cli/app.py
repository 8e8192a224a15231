from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from ecgstream.errors import EcgstreamError

P = ParamSpec("P")
R = TypeVar("R")

# pipes and CI logs get a wide console, so tables are not squeezed into 80 columns
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

app = typer.Typer(
    name="ecgstream",
    help="Real-time ECG arrhythmia detection on Kafka, Ray and PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print an ecgstream error as one line and exit 1 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except EcgstreamError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)  # one line
            raise typer.Exit(1) from None
        except _unreachable() as exc:  # a service of the stack is down: say so, and the fix
            err_console.print(
                f"[bold red]error:[/] cannot reach a service ({type(exc).__name__}: {exc}); "
                "is the stack up? Start it with `ecgstream cluster up`, or check the "
                "ECGSTREAM_* addresses of your Kafka, PostgreSQL and Ray",
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _unreachable() -> tuple[type[BaseException], ...]:
    """What a client raises when its service does not answer (aiokafka imported only then)."""
    from aiokafka.errors import KafkaConnectionError

    return (ConnectionError, KafkaConnectionError)


def _register() -> None:
    # imported for their side effect of adding commands; kept here to avoid import cycles
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


_register()


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
