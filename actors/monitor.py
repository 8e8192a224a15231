"""Monitor actor: the fleet's signal quality, physiology and drift, and the /metrics endpoint.

Consumers send it, once per batch and at most one call in flight, the batch's chunk statistics,
a columnar summary of its classified beats and its counters. The analysis is
`ecgstream.monitoring.FleetMonitor` (pure logic, shared with `bench drift`); this actor adds the
Prometheus exporter (prometheus-client on `settings.prometheus.metrics_port`) and writes the
technical alarms it raises (sensor faults, `kind=technical`) to `ecg.alerts` and PostgreSQL with
the same idempotent sinks as the clinical alarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import ray

from ecgstream.artifact import load_artifact
from ecgstream.messages import AlarmEvent
from ecgstream.monitoring.fleet import BeatSummary, FleetMonitor
from ecgstream.monitoring.metrics import ConsumerReport, MonitorMetrics
from ecgstream.processing import WindowStats
from ecgstream.settings import Settings

log = logging.getLogger("ecgstream.monitor")

MONITOR_NAME = "ecgstream-monitor"
ALARM_RETRY_S = 2.0


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
        self._patients: dict[str, str] = {}
        self._technical: list[AlarmEvent] = []
        self._raised: list[dict[str, Any]] = []  # recent technical alarms and drift changes
        self._last_ms = 0.0
        self._metrics_error: str | None = None
        self._writer: asyncio.Task | None = None
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
        windows: list[WindowStats],
        beats: BeatSummary | None = None,
        report: ConsumerReport | None = None,
    ) -> int:
        now = time.time()
        raised = self._fleet.observe_windows(windows)
        for w in windows:
            self._received_per_device[w.device_id] += 1
            if w.patient_id:
                self._patients[w.device_id] = w.patient_id
        changes = self._fleet.observe_beats(beats) if beats is not None else []
        if report is not None:
            self._metrics.record(report, now)
        self._metrics.record_fleet(self._fleet, len(windows), [a.evidence["fault"] for a in raised])
        for alarm in raised:
            self._technical.append(
                AlarmEvent(alarm, self._patients.get(alarm.device_id, ""), self._model_version)
            )
            self._remember({"alarm_id": alarm.alarm_id, "fault": alarm.evidence["fault"]})
        for change in changes:
            self._remember(change)
        if self._technical and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write_technical())
        self._last_ms = now * 1000
        return self._fleet.windows

    def _remember(self, item: dict[str, Any]) -> None:
        self._raised.append({"at": time.strftime("%H:%M:%S"), **item})
        del self._raised[:-50]

    async def _write_technical(self) -> None:
        """Send pending technical alarms to Kafka and PostgreSQL, retrying until both took
        them (alarm ids make a repeat harmless)."""
        import asyncpg

        from ecgstream.io.kafka import make_producer
        from ecgstream.io.sinks import KafkaSink, PostgresSink

        if self._settings is None:
            self._technical.clear()
            return
        while self._technical:
            batch = list(self._technical)
            try:
                producer = make_producer(self._settings)
                await producer.start()
                pool = await asyncpg.create_pool(
                    self._settings.postgres_dsn("sink"), min_size=1, max_size=1
                )
                try:
                    await KafkaSink(self._settings, producer).write([], batch, [], self._classes)
                    await PostgresSink(pool).write([], batch)
                finally:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    await pool.close()
                del self._technical[: len(batch)]
            except Exception as exc:
                log.warning("technical alarms not written yet (%s)", type(exc).__name__)
                await asyncio.sleep(ALARM_RETRY_S)

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
            "pending_technical_alarms": len(self._technical),
            "recent": self._raised[-10:],
            **self._fleet.summary(),
        }

    def received_for(self, device_prefix: str) -> int:
        """Windows received from devices whose id starts with the prefix (tests, demos)."""
        return sum(n for d, n in self._received_per_device.items() if d.startswith(device_prefix))
