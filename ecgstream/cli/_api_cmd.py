"""`ecgstream api up | down` and `ecgstream api-keys create | list | revoke`."""

from __future__ import annotations

import typer
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
from ecgstream.io.db import with_connection
from ecgstream.settings import load_settings

api_app = typer.Typer(help="The REST API on Ray Serve (needs `ecgstream cluster up`).")
keys_app = typer.Typer(help="API keys of the REST API (stored hashed in PostgreSQL).")


@api_app.command()
@reports_errors
def up(
    replicas: int = typer.Option(
        2, min=1, help="ingress replicas; each runs the model (~0.8 GB of memory each)"
    ),
) -> None:
    """Deploy the API (HTTP on 127.0.0.1:<serve_http_port>); OpenAPI at /docs and /openapi.json."""
    from actors.pipeline import api_up
    from tuning.promotion import production_model_dir

    settings = load_settings()
    with console.status("deploying the REST API"):
        url = api_up(settings, production_model_dir(settings), replicas)
    console.print(f"REST API at [bold]{url}[/] (schema: {url}/openapi.json)")


@api_app.command()
@reports_errors
def down() -> None:
    """Remove the API application (the stream is not touched)."""
    from actors.pipeline import api_down

    api_down(load_settings())
    console.print("REST API removed")


@keys_app.command()
@reports_errors
def create(
    name: str = typer.Option(..., help="who or what the key is for"),
    requests_per_minute: int | None = typer.Option(
        None, min=1, help="this key's budget; default ECGSTREAM_API__REQUESTS_PER_MINUTE"
    ),
    scope: list[str] = typer.Option(
        ["classify"],
        "--scope",
        help="what the key may do (repeatable): classify (the REST API), station (the central "
        "station: view and act), station-view (view only)",
    ),
) -> None:
    """Create a key. It is printed once and stored only as a hash: keep it."""
    from ecgstream.errors import ConfigurationError
    from ecgstream.io.api_keys import create_key

    unknown = sorted(set(scope) - {"classify", "station", "station-view"})
    if unknown:
        raise ConfigurationError(f"unknown scope(s) {', '.join(unknown)}")
    key_id, key = with_connection(
        load_settings(),
        lambda conn: create_key(conn, name, tuple(scope), requests_per_minute=requests_per_minute),
    )
    console.print(f"key id {key_id} for {name!r}:")
    print(key)  # plain stdout, so scripts can capture it


@keys_app.command("list")
@reports_errors
def list_keys() -> None:
    """Key ids, names and state (never the keys)."""
    from ecgstream.io.api_keys import list_keys as fetch

    table = Table(title="API keys")
    for column in ("key id", "name", "scopes", "requests/min", "created", "revoked"):
        table.add_column(column)
    for key in with_connection(load_settings(), fetch):
        table.add_row(
            key.key_id,
            key.name,
            ",".join(key.scopes),
            str(key.requests_per_minute or "default"),
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
        )
    console.print(table)


@keys_app.command()
@reports_errors
def revoke(key_id: str = typer.Argument(...)) -> None:
    """Revoke a key; the API refuses it within 5 seconds."""
    from ecgstream.errors import ConfigurationError
    from ecgstream.io.api_keys import revoke_key

    if not with_connection(load_settings(), lambda conn: revoke_key(conn, key_id)):
        raise ConfigurationError(f"no active key {key_id}")
    console.print(f"revoked {key_id}")
