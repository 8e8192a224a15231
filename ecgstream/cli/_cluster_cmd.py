"""`ecgstream cluster up | down | status`: the local stack."""

from __future__ import annotations

import typer
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
from ecgstream.settings import load_settings

cluster_app = typer.Typer(help="Run the local stack: Kafka, PostgreSQL, Prometheus, Ray.")


def _event(name: str, event: str) -> None:
    colour = {"ready": "green", "stopped": "yellow", "starting": "cyan"}.get(event, "dim")
    console.print(f"  {name:<11} [{colour}]{event}[/]")


@cluster_app.command()
@reports_errors
def up(
    secure: bool = typer.Option(
        False,
        "--secure",
        help="TLS and credentials everywhere: Kafka SASL_SSL (SCRAM-SHA-512) and mTLS with "
        "ACLs, PostgreSQL hostssl only, the REST API over HTTPS. Remembered by the state dir.",
    ),
) -> None:
    """Start every local component that is not configured as external; wait until ready."""
    from cluster.stack import LocalStack

    stack = LocalStack(load_settings())
    if secure:
        stack.make_secure()
    mode = "secure" if stack.settings.local_secure else "plaintext, loopback only"
    console.print(f"local stack in [bold]{stack.settings.state_dir}[/] ({mode})")
    stack.up(on_event=_event)
    print_status(stack)


@cluster_app.command("rotate-secrets")
@reports_errors
def rotate_secrets(
    kafka_user: list[str] = typer.Option(
        [],
        "--kafka-user",
        help="a Kafka principal: admin, pipeline, device, subscriber, pager, edge",
    ),
    postgres_role: list[str] = typer.Option(
        [], "--postgres-role", help="a PostgreSQL role: ecgstream (owner), ecgstream_sink"
    ),
    everything: bool = typer.Option(False, "--all", help="every principal and role"),
) -> None:
    """New passwords, effective at once for new connections; restart long-running clients
    (`stream down` + `stream up`: nothing is lost) so they reconnect with them."""
    from cluster.kafka_security import USERS
    from cluster.rotation import POSTGRES_ROLES, rotate_kafka_user, rotate_postgres_role
    from ecgstream.errors import ConfigurationError

    settings = load_settings()
    users, roles = list(kafka_user), list(postgres_role)
    if everything:
        users = list(USERS) if settings.local_secure else []
        roles = list(POSTGRES_ROLES)
    if not users and not roles:
        raise ConfigurationError("name --kafka-user / --postgres-role, or --all")
    if users and not settings.local_secure:
        raise ConfigurationError("Kafka has users only on a secure stack (`cluster up --secure`)")
    for user in users:
        rotate_kafka_user(settings, user)
        console.print(f"  kafka user {user:<12} [green]rotated[/]")
    for role in roles:
        rotate_postgres_role(settings, role)
        console.print(f"  postgres role {role:<16} [green]rotated[/]")


@cluster_app.command()
@reports_errors
def down() -> None:
    """Stop the components this state dir started (by pid); leave everything else alone."""
    from cluster.stack import LocalStack

    LocalStack(load_settings()).down(on_event=_event)


@cluster_app.command()
@reports_errors
def status() -> None:
    """A table of components, endpoints and health. Exit 1 if any is unhealthy."""
    from cluster.stack import LocalStack

    if not print_status(LocalStack(load_settings())):
        raise typer.Exit(1)


def print_status(stack: object) -> bool:
    from cluster.stack import LocalStack

    assert isinstance(stack, LocalStack)
    table = Table(title="ecgstream local stack")
    for column in ("component", "pid", "endpoint", "health", "detail"):
        table.add_column(column, no_wrap=column != "detail")
    statuses = stack.status()
    for s in statuses:
        table.add_row(
            s.name,
            str(s.pid or "-"),
            s.endpoint,
            "[green]healthy[/]" if s.healthy else "[red]down[/]",
            s.detail,
        )
    console.print(table)
    for s in statuses:
        if not s.healthy and s.log_file is not None:
            console.print(f"  {s.name} log: {s.log_file}")
    return all(s.healthy for s in statuses)
