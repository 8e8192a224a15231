"""Monitoring on the real stack: a device whose signal goes flat raises one technical alarm in
`ecg.alerts` and PostgreSQL, and asystole; one whose electrodes come off raises its technical
alarm and no asystole (inhibited, counted); clean devices raise none; the local Prometheus
scrapes the monitor, every dashboard panel and every alert rule's expression returns data
through its HTTP API, `promtool` accepts the rules, and no device or patient id is a label value."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import numpy as np
import yaml

from ecgstream.benchmarks.drift import Device, device_chunks
from ecgstream.io.device_keys import device_signer
from ecgstream.io.device_simulator import replay
from ecgstream.io.kafka import make_producer
from ecgstream.records import load_record
from ecgstream.settings import Settings
from tests.integration.pipeline_support import RECORDS, topic_messages, wait_for_beats

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "monitoring" / "prometheus" / "ecgstream-rules.yml"
COMPARISON = re.compile(r"^(?P<signal>.+?)\s*(?:==|!=|>=|<=|>|<)\s*[-\d.]+$", re.S)


def _query(settings: Settings, expr: str) -> list:
    url = f"{settings.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _promtool_check(rules: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True)


def panel_exprs() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            out += [(f"{board['uid']}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    return out


def rule_signals() -> list[tuple[str, str]]:
    """Each alert's expression without its threshold: the signal that must exist."""
    out = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            match = COMPARISON.match(rule["expr"].strip())
            assert match, f"{rule['alert']}: expression is not '<signal> <op> <number>'"
            out.append((rule["alert"], match["signal"]))
    return out


async def _publish_faulty_device(
    settings: Settings, mitdb: Path, device_id: str, fault: str
) -> int:
    record = load_record(mitdb, "101")
    device = Device(device_id, record, fault, inject_sample=int(60 * record.fs))
    producer = make_producer(settings, "device")
    signer = device_signer(settings)
    assert signer is not None, "the test stack has a fleet secret"
    await producer.start()
    sent = 0
    try:
        origin = time.time()  # sent at once, like replay at full speed: never late
        for _, payload, _ in device_chunks(device, 150, np.random.default_rng(1), origin):
            await producer.send(
                settings.topics.samples,
                payload,
                key=device_id.encode(),
                headers=signer.headers(device_id, payload),
            )
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _alarms(settings: Settings, prefix: str, category: str = "technical") -> list:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        return await conn.fetch(
            "SELECT alarm_id, device_id, kind, category, evidence FROM alarms "
            "WHERE device_id LIKE $1 AND category = $2 ORDER BY device_id, start_sample",
            f"{prefix}%",
            category,
        )
    finally:
        await conn.close()


async def test_sensor_fault_alarm_metrics_dashboards_and_rules(
    pipeline: Settings, mitdb_dir: Path
) -> None:
    prefix = f"mon{uuid.uuid4().hex[:6]}"
    faulty, off = f"{prefix}-flat", f"{prefix}-off"
    await replay(pipeline, mitdb_dir, RECORDS, 3, speed=0, duration_s=150, prefix=prefix)
    assert await _publish_faulty_device(pipeline, mitdb_dir, faulty, "flat_line") == 150
    assert await _publish_faulty_device(pipeline, mitdb_dir, off, "lead_off") == 150
    await wait_for_beats(pipeline, prefix, 400, timeout_s=180)

    rows: list = []
    for _ in range(60):
        rows = await _alarms(pipeline, prefix)
        if len(rows) >= 2:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(3)  # a second alarm for the same episode would show up now
    rows = await _alarms(pipeline, prefix)
    assert [(r["device_id"], r["kind"], json.loads(r["evidence"])["fault"]) for r in rows] == [
        (faulty, "technical", "flat_line"),
        (off, "technical", "lead_off"),
    ], rows
    alerts = [json.loads(m.value) for m in await topic_messages(pipeline, pipeline.topics.alerts)]
    technical = [a for a in alerts if a["device"].startswith(prefix) and a["kind"] == "technical"]
    assert {(a["device"], a["fault"], a["category"]) for a in technical} == {
        (faulty, "flat_line", "technical"),
        (off, "lead_off", "technical"),
    }
    # a flat line with the leads on is asystole, raised by the stream's clock; with the
    # electrodes off the same silence is "cannot analyse ECG": inhibited, and counted
    clinical = await _alarms(pipeline, prefix, "clinical")
    silent = {(r["device_id"], r["kind"]) for r in clinical if r["kind"] in ("asystole", "pause")}
    assert (faulty, "asystole") in silent and not {k for d, k in silent if d == off}, clinical

    # Prometheus scrapes the monitor (file discovery), then every panel and rule has data
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        up = _query(pipeline, 'up{component="monitor"} == 1')
        if up and _query(pipeline, 'ecgstream_sensor_faults_total{fault="flat_line"} > 0'):
            break
        await asyncio.sleep(2)
    else:
        raise AssertionError("Prometheus never scraped the monitor's flat-line fault")
    assert _query(pipeline, "ecgstream_alarms_inhibited_total > 0")
    await asyncio.sleep(12)  # two more scrapes: rate() and deriv() need two samples
    empty = [
        (where, expr)
        for where, expr in panel_exprs() + rule_signals()
        if not _query(pipeline, expr)
    ]
    assert not empty, f"expressions without data: {empty}"
    assert len(panel_exprs()) >= 20 and len(rule_signals()) >= 10

    # the rules as Prometheus loaded them: all present and evaluated without error
    body = json.loads(_get(f"{pipeline.prometheus_url}/api/v1/rules"))
    loaded = [rule for g in body["data"]["groups"] for rule in g["rules"]]
    assert {rule["name"] for rule in loaded} >= {name for name, _ in rule_signals()}
    assert all(rule["health"] == "ok" for rule in loaded), loaded
    check = _promtool_check(RULES)
    assert check.returncode == 0, check.stdout + check.stderr

    # privacy: no device or patient identifier anywhere in the exported metrics
    port = pipeline.prometheus.metrics_port
    exported = _get(f"http://127.0.0.1:{port}/metrics")
    assert prefix not in exported and "pt-" not in exported
    assert "ecgstream_beat_latency_seconds_bucket" in exported
