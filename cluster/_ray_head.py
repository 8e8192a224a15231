"""The local Ray head node: `ray start --head --block` with pinned resources.

Chosen over `ray.init()` in each process so that the pipeline's actors, the Serve application,
the CLI and the tests all attach to one long-lived cluster (`ray.init(address=...)`), which is
also how a KubeRay cluster is used. `--block` keeps one parent process that owns every Ray
process it spawned: SIGTERM to it shuts the whole node down, so `down` stops it by pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cluster._process import ManagedProcess, ensure_ports_free, probe_status, wait_until
from cluster._tls import CertificateAuthority
from cluster.state import ComponentStatus, StatePaths
from ecgstream.errors import StackError
from ecgstream.settings import Settings

# Ray replaces 127.0.0.1 by the machine's routable address unless told it is not a cluster
# host; the local stack keeps all of Ray's traffic on loopback. Drivers set the same variable.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

# `ray start`'s message when its raylet missed Ray's fixed registration window (a loaded host)
STARTUP_RACE = "timed out during startup"
START_ATTEMPTS = 3


def ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


class RayHead:
    name = "ray"

    def __init__(self, settings: Settings, paths: StatePaths) -> None:
        self._settings = settings
        self._local = settings.local
        self._temp_dir = paths.short_tmp_dir("ray")
        # HAProxy adds a 56-character directory under this and limits socket paths to 97 bytes
        self._haproxy_dir = paths.short_tmp_dir("hap", prefix="ecg")
        self.process = ManagedProcess(
            name=self.name,
            pid_file=paths.pid_file(self.name),
            log_file=paths.log_file(self.name),
            marker=str(self._temp_dir),
            stop_timeout_s=45.0,
        )

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._local.ray_gcs_port}"

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        ensure_ports_free(
            self.name,
            {
                name: getattr(self._local, name)
                for name in (
                    "ray_gcs_port",
                    "ray_dashboard_port",
                    "ray_metrics_port",
                    "ray_client_port",
                    "ray_agent_port",
                    "haproxy_stats_port",
                    "haproxy_metrics_port",
                )
            },
        )
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.update(LOOPBACK_ENV)
        if self._settings.local_secure:
            # HTTPS for the REST API; Ray's HAProxy ingress has no TLS, so Serve's own proxy
            CertificateAuthority(self._settings.tls_dir).ensure().issue("api", server=True)
        elif self._local.serve_haproxy:
            env.update(self._haproxy_env())
        self.process.start(
            [
                ray_executable(),
                "start",
                "--head",
                "--block",
                "--disable-usage-stats",
                "--node-ip-address=127.0.0.1",
                f"--port={self._local.ray_gcs_port}",
                f"--num-cpus={self._local.ray_num_cpus}",
                f"--object-store-memory={self._local.ray_object_store_mb * 1024 * 1024}",
                f"--temp-dir={self._temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self._local.ray_dashboard_port}",
                f"--metrics-export-port={self._local.ray_metrics_port}",
                f"--ray-client-server-port={self._local.ray_client_port}",
                f"--dashboard-agent-listen-port={self._local.ray_agent_port}",
            ],
            env=env,
        )

    def _haproxy_env(self) -> dict[str, str]:
        """Serve's HAProxy mode, with every file, socket and port of it owned by this stack
        (Ray's defaults are one /tmp/haproxy-serve and fixed ports for the whole machine, so a
        test stack beside a demo stack would share them)."""
        run_dir = self._haproxy_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        first = self._local.serve_replica_port_min
        return {
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run_dir / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run_dir / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run_dir),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run_dir / "server-state"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(run_dir / "metrics.sock"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(self._local.haproxy_stats_port),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(self._local.haproxy_metrics_port),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(first + 99),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(first + 100),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(first + 199),
            # one machine, one HAProxy: a replica being removed needs seconds, not the 30 s
            # Ray leaves for an external load balancer to notice
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "3",
        }

    def wait_ready(self) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                wait_until(
                    self._ray_status_ok,
                    timeout_s=self._local.startup_timeout_s,
                    process=self.process,
                    what="`ray status`",
                    interval_s=2.0,
                )
                return
            except StackError:
                if attempt == START_ATTEMPTS or STARTUP_RACE not in self.process.log_tail(60):
                    raise
            # Ray gives its raylet a fixed 30 s to register with the GCS (not configurable);
            # with Kafka's JVM and postgres booting beside it on 2 cores that can pass, and
            # `ray start` exits. Nothing is wrong with the node: clear what it left, start again.
            self.process.kill_leftover_group()
            self.start()

    def after_ready(self) -> None:
        pass

    def stop(self) -> bool:
        return self.process.stop()

    def status(self) -> ComponentStatus:
        return probe_status(
            self.process,
            self.endpoint,
            self._ray_status_ok,
            ok="ray status ok",
            failed="ray status failed",
        )

    def _ray_status_ok(self) -> bool:
        result = subprocess.run(
            [ray_executable(), "status", f"--address={self.endpoint}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, **LOOPBACK_ENV},
        )
        return result.returncode == 0
