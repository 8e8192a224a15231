"""Prometheus from Debian's packages, with a config generated into the state dir.

Scrape targets are file-based service discovery: anything that serves `/metrics` registers by
dropping a JSON file into `<state>/prometheus/targets/` (see `register_scrape_target`), so the
pipeline, tests and Ray's metrics agent are found without editing the config.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from cluster._process import ManagedProcess, ensure_ports_free, probe_status, wait_until
from cluster.state import ComponentStatus, StatePaths
from ecgstream.errors import StackError
from ecgstream.settings import Settings

SCRAPE_INTERVAL_S = 5
SHIPPED_RULES_DIR = Path(__file__).resolve().parents[1] / "monitoring" / "prometheus"


class PrometheusServer:
    name = "prometheus"

    def __init__(self, settings: Settings, paths: StatePaths) -> None:
        self._settings = settings
        self._port = settings.local.prometheus_port
        self._dir = paths.component_dir("prometheus")
        self._config = self._dir / "prometheus.yml"
        self.targets_dir = self._dir / "targets"
        self.rules_dir = self._dir / "rules"
        self.process = ManagedProcess(
            name=self.name,
            pid_file=paths.pid_file(self.name),
            log_file=paths.log_file(self.name),
            marker=str(self._config),
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        if self.process.pid() is not None:
            return
        ensure_ports_free(self.name, {"prometheus_port": self._port})
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError(self.name, "'prometheus' not on PATH: apt-get install prometheus")
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        for rules in sorted(SHIPPED_RULES_DIR.glob("*.yml")):  # the project's alert rules
            shutil.copyfile(rules, self.rules_dir / rules.name)
        self._config.write_text(self.render_config())
        register_scrape_target(
            self.targets_dir,
            "ray-head",
            [f"127.0.0.1:{self._settings.local.ray_metrics_port}"],
            {"job": "ray"},
        )
        self.process.start(
            [
                binary,
                f"--config.file={self._config}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self._port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2d",
            ]
        )

    def render_config(self) -> str:
        # JSON is valid YAML: no YAML writer needed and no quoting surprises.
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "rule_files": [str(self.rules_dir / "*.yml")],
            "scrape_configs": [
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"127.0.0.1:{self._port}"]}],
                },
                {
                    "job_name": "ecgstream",
                    "file_sd_configs": [
                        {"files": [str(self.targets_dir / "*.json")], "refresh_interval": "5s"}
                    ],
                },
            ],
        }
        return json.dumps(config, indent=2) + "\n"

    def wait_ready(self) -> None:
        wait_until(
            lambda: _http_ok(f"{self.endpoint}/-/ready"),
            timeout_s=self._settings.local.startup_timeout_s,
            process=self.process,
            what="GET /-/ready",
        )

    def after_ready(self) -> None:
        pass

    def stop(self) -> bool:
        return self.process.stop()

    def status(self) -> ComponentStatus:
        return probe_status(
            self.process,
            self.endpoint,
            lambda: _http_ok(f"{self.endpoint}/-/ready"),
            ok="/-/ready ok",
            failed="not ready",
        )


def register_scrape_target(
    targets_dir: Path, name: str, addresses: list[str], labels: dict[str, str] | None = None
) -> Path:
    """Ask Prometheus to scrape `addresses` (host:port serving /metrics). Atomic write."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": addresses, "labels": labels or {}}]))
    tmp.replace(path)
    return path


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.status == 200
