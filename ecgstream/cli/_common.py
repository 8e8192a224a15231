"""What every command module shares: the consoles and the error boundary. Below the command
modules and the app that assembles them, so neither imports the other's module."""

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
