"""ecgstream's Prometheus metrics, served by the monitor actor.

prometheus-client in one actor rather than `ray.util.metrics` in every actor: Ray prefixes and
relabels its metrics (`ray_...`, with its own node and component labels) and exports them per
node through its agent, while these names are a contract for the dashboards and alert rules.
Consumers send their counts to the monitor with each batch (one call, already made for the
signal statistics), so one scrape target holds everything.

No label ever carries a patient or device id: labels are bounded sets (class, reason, fault,
alarm kind, partition, feature). Per-device detail goes to Kafka and PostgreSQL.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from ecgstream.alarms import CLINICAL_KINDS
from ecgstream.errors import RejectReason
from ecgstream.monitoring.drift import DRIFT_FEATURES
from ecgstream.monitoring.fleet import FleetMonitor
from ecgstream.monitoring.signal_quality import FAULTS, TECHNICAL_KIND

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass
class ConsumerReport:
    """What one consumer batch adds to the counters (sent to the monitor with the batch)."""

    chunks: int = 0
    duplicates: int = 0
    sessions: int = 0  # devices that started a new boot session (a reboot)
    retries: int = 0
    beats_by_class: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    alarms_by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, category)
    serve_batch_sizes: list[int] = field(default_factory=list)
    alarms_inhibited: int = 0  # arrhythmia alarms not raised: the signal was unanalysable
    unanalysable_beats: int = 0  # beats marked with an inhibiting sensor fault
    lag_by_partition: dict[int, int] | None = None  # sent every few seconds, not every batch


class MonitorMetrics:
    def __init__(self, classes: tuple[str, ...]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.chunks = PromCounter("ecgstream_chunks", "Signal chunks processed", registry=r)
        self.duplicate_chunks = PromCounter(
            "ecgstream_duplicate_chunks", "Chunks skipped as already processed", registry=r
        )
        self.sessions = PromCounter(
            "ecgstream_device_sessions_started",
            "Devices that started a new boot session (rebooted: counters from 0 again)",
            registry=r,
        )
        self.retries = PromCounter(
            "ecgstream_consumer_retries",
            "Retried pipeline steps (Serve, Kafka, PostgreSQL)",
            registry=r,
        )
        self.beats = PromCounter(
            "ecgstream_beats", "Classified beats by predicted class", ["class"], registry=r
        )
        self.latency = Histogram(
            "ecgstream_beat_latency_seconds",
            "From the Kafka timestamp of the chunk that completed a beat to its classification",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.dead_letters = PromCounter(
            "ecgstream_dead_letters", "Rejected input messages by reason", ["reason"], registry=r
        )
        self.alarms = PromCounter(
            "ecgstream_alarms",
            "Alarms raised by kind and category",
            ["kind", "category"],
            registry=r,
        )
        self.alarms_inhibited = PromCounter(
            "ecgstream_alarms_inhibited",
            "Arrhythmia alarms not raised because a sensor fault made the ECG unanalysable",
            registry=r,
        )
        self.unanalysable_beats = PromCounter(
            "ecgstream_beats_unanalysable",
            "Beats cut while a sensor fault made the ECG unanalysable (marked, not alarmed on)",
            registry=r,
        )
        self.serve_batch = Histogram(
            "ecgstream_serve_request_beats",
            "Beats per classification request sent to Ray Serve",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "ecgstream_consumer_lag_messages",
            "Input messages not yet committed",
            ["partition"],
            registry=r,
        )
        self.windows = PromCounter(
            "ecgstream_monitor_windows", "Chunk statistics received by the monitor", registry=r
        )
        self.last_data = Gauge(
            "ecgstream_last_data_timestamp_seconds",
            "Unix time the monitor last received data",
            registry=r,
        )
        self.devices = Gauge("ecgstream_devices", "Devices seen by the monitor", registry=r)
        self.sensor_faults = PromCounter(
            "ecgstream_sensor_faults", "Sensor fault episodes raised", ["fault"], registry=r
        )
        self.devices_in_fault = Gauge(
            "ecgstream_devices_in_fault",
            "Devices currently in each fault",
            ["fault"],
            registry=r,
        )
        self.feature_psi = Gauge(
            "ecgstream_feature_drift_psi",
            "PSI of a beat feature against the reference, per predicted class",
            ["class", "feature"],
            registry=r,
        )
        self.class_mix_psi = Gauge(
            "ecgstream_class_mix_psi",
            "PSI of the predicted class mix vs the reference",
            registry=r,
        )
        self.class_mix = Gauge(
            "ecgstream_class_mix_ratio",
            "Share of each predicted class (recent window)",
            ["class"],
            registry=r,
        )
        self.confidence = Gauge(
            "ecgstream_prediction_confidence_mean", "Mean top-class probability", registry=r
        )
        self.entropy = Gauge(
            "ecgstream_prediction_entropy_mean", "Mean prediction entropy (nats)", registry=r
        )
        self.drift = Gauge(
            "ecgstream_drift_detected", "1 while drift is flagged", ["kind"], registry=r
        )
        self.heart_rate = Gauge(
            "ecgstream_heart_rate_median_bpm", "Median heart rate over devices", registry=r
        )
        self.rr_variability = Gauge(
            "ecgstream_rr_variability_median_seconds", "Median RMSSD over devices", registry=r
        )
        self._fleet: FleetMonitor | None = None  # the fleet the scrape-time read-outs are of
        # every labelled series exists from the start (0), so panels and rules see data
        for name in classes:
            self.beats.labels(name)
            self.class_mix.labels(name)
            for feature in DRIFT_FEATURES:
                self.feature_psi.labels(name, feature)
        for fault in FAULTS:
            self.sensor_faults.labels(fault)
            self.devices_in_fault.labels(fault)
        for kind in ("data", "prediction"):
            self.drift.labels(kind)
        for reason in RejectReason:
            self.dead_letters.labels(reason.value)
        for kind in CLINICAL_KINDS:
            self.alarms.labels(kind, "clinical")
        self.alarms.labels(TECHNICAL_KIND, "technical")

    def record(self, report: ConsumerReport, now_s: float) -> None:
        self.chunks.inc(report.chunks)
        self.duplicate_chunks.inc(report.duplicates)
        self.sessions.inc(report.sessions)
        self.retries.inc(report.retries)
        for name, n in report.beats_by_class.items():
            self.beats.labels(name).inc(n)
        for seconds in report.latencies_s:
            self.latency.observe(seconds)
        for reason, n in report.dead_letters_by_reason.items():
            self.dead_letters.labels(reason).inc(n)
        for (kind, category), n in report.alarms_by_kind.items():
            self.alarms.labels(kind, category).inc(n)
        self.alarms_inhibited.inc(report.alarms_inhibited)
        self.unanalysable_beats.inc(report.unanalysable_beats)
        for size in report.serve_batch_sizes:
            self.serve_batch.observe(size)
        if report.lag_by_partition is not None:
            for partition, lag in report.lag_by_partition.items():
                self.lag.labels(str(partition)).set(lag)
        self.last_data.set(now_s)

    def record_fleet(self, fleet: FleetMonitor, new_windows: int, new_faults: list[str]) -> None:
        self.windows.inc(new_windows)
        if self._fleet is not fleet:  # the per-device read-outs are computed when scraped
            self._fleet = fleet
            self.devices.set_function(fleet.device_count)
            self.heart_rate.set_function(lambda: _median_or_nan(fleet.heart_rates()))
            self.rr_variability.set_function(lambda: _median_or_nan(fleet.rr_variability()))
        for fault in new_faults:  # their alarms are counted with the consumers' alarms
            self.sensor_faults.labels(fault).inc()
        active = fleet.active_faults()
        for fault in FAULTS:
            self.devices_in_fault.labels(fault).set(active.get(fault, 0))
        state = fleet.drift.state
        for name, features in state.feature_psi.items():
            for feature, value in features.items():
                self.feature_psi.labels(name, feature).set(value)
        self.class_mix_psi.set(state.mix_psi)
        for name, share in state.class_mix.items():
            self.class_mix.labels(name).set(share)
        self.confidence.set(state.mean_confidence)
        self.entropy.set(state.mean_entropy)
        self.drift.labels("data").set(int(state.data_drift))
        self.drift.labels("prediction").set(int(state.prediction_drift))


def _median_or_nan(values: list[float]) -> float:
    """The upper median (a reading, not an average of two), NaN (no data) when there is none."""
    return sorted(values)[len(values) // 2] if values else math.nan
