"""Monitor actor: the fleet's signal quality, physiology and drift, and the /metrics endpoint.

Consumers send it, once per batch and at most one call in flight, a summary of the batch's
signal windows (each device's verdict), a columnar summary of its classified beats and its
counters. The analysis is
`ecgstream.monitoring.FleetMonitor` (pure logic, shared with `bench drift`); this actor adds the
Prometheus exporter (prometheus-client on `settings.prometheus.metrics_port`). Sensor faults are
judged by the consumers in the stream path and their technical alarms written with the beats;
the monitor counts them and how many devices are in each fault.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import ray

from ecgstream.artifact import load_artifact
from ecgstream.monitoring.fleet import BeatSummary, FleetMonitor, WindowSummary
from ecgstream.monitoring.metrics import ConsumerReport, MonitorMetrics
from ecgstream.settings import Settings
from ecgstream.signal.chunk_stats import WindowStats

log = logging.getLogger("ecgstream.monitor")

MONITOR_NAME = "ecgstream-monitor"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class MonitorActor:
    def __init__(self, settings_json: str | None = None, model_dir: str | None = None) -> None:
        self._settings = Settings.from_json(settings_json) if settings_json is not None else None
        artifact = load_artifact(None if model_dir is None else Path(model_dir))
        self._model_version = artifact.version
        self._classes = artifact.classes
        self._fleet = FleetMonitor(artifact.reference)
        self._metrics = MonitorMetrics(artifact.classes)
        self._received_per_device: dict[str, int] = defaultdict(int)
        self._raised: list[dict[str, Any]] = []  # recent technical alarms and drift changes
        self._last_ms = 0.0
        self._inhibited = 0  # arrhythmia alarms the consumers held back (unanalysable ECG)
        self._metrics_error: str | None = None
        self._serve_metrics()

    def _serve_metrics(self) -> None:
        from prometheus_client import start_http_server

        if self._settings is None:
            return
        port = self._settings.prometheus.metrics_port
        try:
            start_http_server(
                port, addr=self._settings.prometheus.metrics_host, registry=self._metrics.registry
            )
        except OSError as exc:  # the port is taken: keep monitoring, say so in the summary
            self._metrics_error = f"cannot serve /metrics on port {port}: {exc.strerror}"
            log.warning(self._metrics_error)

    async def observe(
        self,
        windows: WindowSummary | list[WindowStats],
        beats: BeatSummary | None = None,
        report: ConsumerReport | None = None,
    ) -> int:
        now = time.time()
        summary = windows if isinstance(windows, WindowSummary) else WindowSummary.of(windows)
        raised = self._fleet.observe_windows(summary)
        for device, chunks in summary.chunks_by_device.items():
            self._received_per_device[device] += chunks
        changes = self._fleet.observe_beats(beats) if beats is not None else []
        if report is not None:
            self._metrics.record(report, now)
            self._inhibited += report.alarms_inhibited
        self._metrics.record_fleet(self._fleet, summary.windows, raised)
        for fault in raised:
            self._remember({"fault": fault})
        for change in changes:
            self._remember(change)
        self._last_ms = now * 1000
        return self._fleet.windows

    def _remember(self, item: dict[str, Any]) -> None:
        self._raised.append({"at": time.strftime("%H:%M:%S"), **item})
        del self._raised[:-50]

    def use_model(self, model_dir: str | None) -> str:
        """After a promotion: judge drift against the new model's reference distributions
        (its validation patients' features and prediction mix), from a fresh start."""
        artifact = load_artifact(None if model_dir is None else Path(model_dir))
        self._model_version = artifact.version
        self._classes = artifact.classes
        self._fleet.use_reference(artifact.reference)
        self._remember({"model": artifact.version})
        return artifact.version

    def summary(self) -> dict[str, Any]:
        return {
            "windows_received": self._fleet.windows,
            "last_received_ms": self._last_ms,
            "metrics_error": self._metrics_error,
            "alarms_inhibited": self._inhibited,
            "recent": self._raised[-10:],
            **self._fleet.summary(),
        }

    def received_for(self, device_prefix: str) -> int:
        """Windows received from devices whose id starts with the prefix (tests, demos)."""
        return sum(n for d, n in self._received_per_device.items() if d.startswith(device_prefix))
