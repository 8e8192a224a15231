"""The monitor's analysis on real MIT-BIH signal: every injected fault raises its alarm once on
the faulty device, clean devices raise nothing, a changed class mix is prediction drift, and
the PSI behaves as a distance. Runs the same code as the monitor actor (FleetMonitor)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ecgstream.artifact import load_artifact
from ecgstream.benchmarks.drift import Device, fault_scenario, run_fleet
from ecgstream.monitoring.drift import psi
from ecgstream.monitoring.fleet import FleetMonitor
from ecgstream.records import load_record
from ecgstream.splits import DS1

# normal, ectopic-rich and noisy patients; the full DS1 fleet's rate is in `bench drift`
FLEET = ("101", "112", "119", "208", "220", "230")
EXPECTED = {
    "noise": "noise",
    "gain_half": "gain_change",
    "gain_double": "gain_change",
    "baseline_wander": "baseline_wander",
    "inverted_lead": "lead_changed",
    "swapped_lead": "gain_change",
    "wrong_fs": "fs_mismatch",
    "flat_line": "flat_line",
    "lead_off": "lead_off",
}


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_each_sensor_fault_raises_its_alarm_once(mitdb_dir: Path, fault: str) -> None:
    model = load_artifact()
    # change detectors compare with the device's last two minutes: inject after four
    result = fault_scenario(mitdb_dir, fault, model, FLEET, inject_s=240, after_s=90)
    assert result["detected"], result
    assert result["delay_s"] <= 60
    assert EXPECTED[fault] in result["raised"]
    assert result["false_alarms_before_injection"] == 0
    assert result["other_events_after"] == []  # nothing on the other devices either


def test_an_alarm_is_raised_once_per_episode(mitdb_dir: Path) -> None:
    model = load_artifact()
    record = load_record(mitdb_dir, "101")
    victim = Device("dev-flat", record, "flat_line", inject_sample=int(120 * record.fs))
    events = run_fleet([victim], 300, model, FleetMonitor(model.reference))
    # three minutes of flat line: one flat_line alarm, nothing else
    assert Counter(e["kind"] for e in events) == {"flat_line": 1}


def test_clean_fleet_raises_nothing(mitdb_dir: Path) -> None:
    model = load_artifact()
    devices = [Device(f"clean-{name}", load_record(mitdb_dir, name)) for name in FLEET]
    monitor = FleetMonitor(model.reference)
    assert run_fleet(devices, 900, model, monitor) == []
    summary = monitor.summary()
    assert summary["devices"] == len(FLEET) and summary["beats"] > 6000
    assert 50 < summary["median_heart_rate_bpm"] < 110


def test_a_changed_class_mix_is_prediction_drift_not_a_sensor_fault(mitdb_dir: Path) -> None:
    model = load_artifact()
    result = fault_scenario(mitdb_dir, "class_mix", model, DS1, inject_s=240, after_s=120)
    assert result["detected"] and result["raised"] == ["prediction_drift"], result
    assert result["false_alarms_before_injection"] == 0


def test_psi_is_small_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    levels = np.linspace(0, 1, 21).tolist()
    quantiles = np.quantile(rng.normal(size=50_000), levels).tolist()
    same = psi(rng.normal(size=2000), quantiles, levels)
    shifted = psi(rng.normal(0.5, 1, size=2000), quantiles, levels)
    wider = psi(rng.normal(0, 2, size=2000), quantiles, levels)
    assert same < 0.03 < 0.2 < shifted < wider


def test_fleet_read_outs_are_computed_when_prometheus_scrapes(mitdb_dir: Path) -> None:
    """The per-device read-outs (devices, median heart rate and RMSSD) are not recomputed per
    batch (that made the monitor dearer than a consumer): Prometheus gets them at scrape time,
    from the fleet as it is then."""
    from prometheus_client import generate_latest

    from ecgstream.monitoring.metrics import MonitorMetrics

    model = load_artifact()
    monitor = FleetMonitor(model.reference)
    metrics = MonitorMetrics(model.classes)
    metrics.record_fleet(monitor, 0, [])
    before = generate_latest(metrics.registry).decode()
    assert "ecgstream_heart_rate_median_bpm NaN" in before  # no beats yet: no reading
    devices = [Device(f"clean-{name}", load_record(mitdb_dir, name)) for name in FLEET[:3]]
    run_fleet(devices, 60, model, monitor)
    scraped = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line and not line.startswith("#")
    }
    assert scraped["ecgstream_devices"] == 3
    rates = sorted(monitor.heart_rates())
    assert scraped["ecgstream_heart_rate_median_bpm"] == rates[len(rates) // 2]
    assert 40 < scraped["ecgstream_heart_rate_median_bpm"] < 120
    assert 0 < scraped["ecgstream_rr_variability_median_seconds"] < 0.5
