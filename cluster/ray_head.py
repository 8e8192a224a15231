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

from cluster._process import ManagedProcess, ensure_ports_free, wait_until
from cluster.state import ComponentStatus, StatePaths
from ecgstream.settings import Settings

# Ray replaces 127.0.0.1 by the machine's routable address unless told it is not a cluster
# host; the local stack keeps all of Ray's traffic on loopback. Drivers set the same variable.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


class RayHead:
    name = "ray"

    def __init__(self, settings: Settings, paths: StatePaths) -> None:
        self._settings = settings
        self._local = settings.local
        self._temp_dir = paths.short_tmp_dir("ray")
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
                )
            },
        )
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.update(LOOPBACK_ENV)
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

    def wait_ready(self) -> None:
        wait_until(
            self._ray_status_ok,
            timeout_s=self._local.startup_timeout_s,
            process=self.process,
            what="`ray status`",
            interval_s=2.0,
        )

    def after_ready(self) -> None:
        pass

    def stop(self) -> bool:
        return self.process.stop()

    def status(self) -> ComponentStatus:
        pid = self.process.pid()
        healthy, detail = False, "not running"
        if pid is not None:
            healthy = self._ray_status_ok()
            detail = "ray status ok" if healthy else "ray status failed"
        return ComponentStatus(
            self.name, pid, self.endpoint, healthy, detail, self.process.log_file
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
