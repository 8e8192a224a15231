"""`ecgstream station up | down | status | serve | login-link`: the central station."""

from __future__ import annotations

import typer

from ecgstream.cli._common import console, reports_errors
from ecgstream.settings import load_settings

station_app = typer.Typer(help="The central station: the nurses' live page (needs the stack).")


@station_app.command()
@reports_errors
def up() -> None:
    """Start the station's web server (detached, logs in <state>/logs/station.log)."""
    from cluster.station_server import StationServer

    server = StationServer(load_settings())
    with console.status("starting the central station"):
        server.start()
        server.wait_ready()
    console.print(
        f"central station at [bold]{server.url}[/] "
        "(log in: `ecgstream station login-link --name <who>`)"
    )


@station_app.command()
@reports_errors
def down() -> None:
    """Stop the station's web server."""
    from cluster.station_server import StationServer

    stopped = StationServer(load_settings()).stop()
    console.print("central station stopped" if stopped else "central station was not running")


@station_app.command()
@reports_errors
def status() -> None:
    """Whether the station runs and answers; exit 1 if not."""
    from cluster.station_server import StationServer

    state = StationServer(load_settings()).status()
    console.print(f"station  pid {state.pid or '-'}  {state.endpoint}  {state.detail}")
    if not state.healthy:
        raise typer.Exit(1)


@station_app.command()
@reports_errors
def serve() -> None:
    """Run the station in the foreground (what `up` starts, and the Kubernetes Deployment)."""
    from station.app import serve as run

    run(load_settings())


@station_app.command("login-link")
@reports_errors
def login_link(
    name: str = typer.Option(..., help="who logs in: the name actions are recorded under"),
    view_only: bool = typer.Option(False, help="may see the page, not acknowledge or silence"),
) -> None:
    """A one-time login link for a person (a key with the station scope is made for them if
    they have none); it works once, within ECGSTREAM_STATION__LOGIN_LINK_VALID_S."""
    from cluster.station_server import StationServer
    from ecgstream.io.db import with_connection
    from ecgstream.io.station_store import login_link_token

    settings = load_settings()
    scope = "station-view" if view_only else "station"
    valid_s = settings.station.login_link_valid_s
    token = with_connection(settings, lambda conn: login_link_token(conn, name, scope, valid_s))
    console.print(f"one-time login for {name!r} ({scope}), valid {valid_s / 60:.0f} min:")
    print(f"{StationServer(settings).url}/login/once?token={token}")
