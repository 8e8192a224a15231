"""`ecgstream db migrate`: the schema on a PostgreSQL the local stack does not run (Kubernetes'
migration Job, an external server). The local stack applies the same migrations itself."""

from __future__ import annotations

import typer

from ecgstream.cli._common import console, reports_errors
from ecgstream.io.db import with_connection
from ecgstream.settings import load_settings

db_app = typer.Typer(help="The PostgreSQL schema.")


@db_app.command()
@reports_errors
def migrate() -> None:
    """Apply the pending migrations of cluster/migrations (each once; an edited one is refused)."""
    from cluster.migrate import migrate as apply_and_grant

    applied = with_connection(load_settings(), apply_and_grant)
    if applied:
        for migration in applied:
            console.print(f"applied {migration.version:04d}_{migration.name}")
    else:
        console.print("schema up to date")
