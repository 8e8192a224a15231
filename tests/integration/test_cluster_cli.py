"""`ecgstream cluster up | status | down` as a user runs them, on a second stack of its own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.prometheus_server import PrometheusServer
from cluster.state import StatePaths
from ecgstream.errors import StackError
from ecgstream.settings import Settings
from tests.integration.conftest import make_test_settings, run_cli, service_state_dir

OWN_PORTS = {
    "kafka_port": 29292,
    "kafka_controller_port": 29293,
    "postgres_port": 55452,
    "prometheus_port": 29290,
    "ray_gcs_port": 6392,
    "ray_dashboard_port": 8267,
    "ray_metrics_port": 28082,
    "ray_client_port": 20003,
    "ray_agent_port": 52367,
    "haproxy_stats_port": 28406,
    "haproxy_metrics_port": 28103,
    "serve_replica_port_min": 30400,
}


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args)


def _processes_mentioning(*needles: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in text for needle in needles):
            found.append(text[:200])
    return found


@pytest.fixture(scope="module")
def cli_settings() -> Iterator[Settings]:
    state_dir = service_state_dir("ecgstream-cli-test-")
    settings = make_test_settings(state_dir, **OWN_PORTS)
    try:
        yield settings
    finally:
        _cli(settings, "cluster", "down")
        shutil.rmtree(state_dir, ignore_errors=True)


def test_up_is_idempotent_status_is_healthy_and_down_leaves_nothing(
    cli_settings: Settings,
) -> None:
    first = _cli(cli_settings, "cluster", "up")
    assert first.returncode == 0, first.stdout + first.stderr
    paths = StatePaths(cli_settings.state_dir)
    pids = {name: paths.pid_file(name).read_text() for name in ("kafka", "postgres", "ray")}

    second = _cli(cli_settings, "cluster", "up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert {name: paths.pid_file(name).read_text() for name in pids} == pids

    status = _cli(cli_settings, "cluster", "status")
    assert status.returncode == 0, status.stdout
    for component in ("kafka", "postgres", "prometheus", "ray"):
        row = next(line for line in status.stdout.splitlines() if f" {component} " in line)
        assert "healthy" in row

    needles = (str(cli_settings.state_dir), str(paths.short_tmp_dir("ray")))
    assert _processes_mentioning(*needles)
    down = _cli(cli_settings, "cluster", "down")
    assert down.returncode == 0, down.stderr
    assert _processes_mentioning(*needles) == []

    after = _cli(cli_settings, "cluster", "status")
    assert after.returncode == 1
    assert "down" in after.stdout


def test_a_taken_port_is_reported_with_the_setting_to_change(cli_settings: Settings) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", OWN_PORTS["prometheus_port"]))
        squatter.listen()
        server = PrometheusServer(cli_settings, StatePaths(cli_settings.state_dir))
        with pytest.raises(StackError, match="ECGSTREAM_LOCAL__PROMETHEUS_PORT"):
            server.start()
    assert server.process.pid() is None


@pytest.mark.parametrize(
    "args",
    [
        ("stream", "status"),
        ("bench", "api", "--seconds", "2"),
        ("db", "migrate"),
        ("api-keys", "list"),
        ("replay", "--records", "101", "--duration", "2"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_command_that_needs_the_stack_fails_at_once_with_the_fix_when_it_is_down(
    cli_settings: Settings, args: tuple[str, ...]
) -> None:
    """Not minutes of retries ending in a traceback that names only an address."""
    _cli(cli_settings, "cluster", "down")
    started = time.monotonic()
    done = _cli(cli_settings, *args)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "ecgstream cluster up" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert elapsed < 30, elapsed  # the CLI's own start (imports) is most of it
