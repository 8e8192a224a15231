"""The edge runner forwarding to the real Kafka broker: exactly once, across a broker it cannot
reach, a crash between Kafka's commit and SQLite's record of it, and a SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ecgstream.edge.export import export_bundle
from ecgstream.edge.outbox import Outbox
from ecgstream.io.edge_forward import BATCH, KafkaForwarder, KafkaTarget
from ecgstream.settings import Settings
from tests.integration.pipeline_support import topic_messages

EDGE = str(Path(sys.executable).with_name("ecgstream-edge"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edge") / "bundle"
    export_bundle(None, out)
    return out


def _run(bundle: Path, outbox: Path, device: str, mitdb: Path, *extra: str) -> list[str]:
    return [
        EDGE, "run", "--bundle", str(bundle), "--device", device, "--outbox", str(outbox),
        "--wfdb", str(mitdb / "119"), *extra,
    ]  # fmt: skip


def _in_kafka(settings: Settings, device: str) -> tuple[dict[str, int], dict[str, int]]:
    """beat_id -> copies and alarm_id -> copies of `device` (committed messages only)."""
    counts: list[dict[str, int]] = [{}, {}]
    for index, topic in enumerate((settings.topics.beats, settings.topics.alerts)):
        for message in asyncio.run(topic_messages(settings, topic)):
            payload = json.loads(message.value)
            if payload.get("device") == device:
                key = payload.get("beat_id") or payload["alarm_id"]
                counts[index][key] = counts[index].get(key, 0) + 1
    return counts[0], counts[1]


def _outbox_ids(path: Path) -> tuple[set[str], set[str]]:
    box = Outbox(path)
    rows = box._db.execute("SELECT kind, message_id FROM outbox").fetchall()
    box.close()
    return {m for k, m in rows if k == "beat"}, {m for k, m in rows if k == "alarm"}


def _assert_exactly_once(settings: Settings, device: str, outbox: Path) -> None:
    beats, alarms = _in_kafka(settings, device)
    expected_beats, expected_alarms = _outbox_ids(outbox)
    assert set(beats) == expected_beats and len(expected_beats) > 100
    assert set(alarms) == expected_alarms
    assert set(beats.values()) == {1}, "a beat reached Kafka twice"
    assert set(alarms.values()) <= {1}
    counts = json.loads(subprocess.run(
        [EDGE, "status", "--outbox", str(outbox)], capture_output=True, text=True, check=True
    ).stdout)  # fmt: skip
    assert counts["pending"] == 0


def test_results_wait_offline_and_go_once_when_the_broker_is_reachable(
    settings: Settings, bundle: Path, mitdb_dir: Path, tmp_path: Path
) -> None:
    device = f"edge-{uuid.uuid4().hex[:6]}"
    outbox = tmp_path / "outbox.sqlite"
    offline = subprocess.run(
        _run(bundle, outbox, device, mitdb_dir, "--speed", "0", "--seconds", "300",
             "--kafka", "127.0.0.1:1", "--drain-s", "3"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr[-2000:]
    summary = json.loads(offline.stdout.splitlines()[-1])
    assert summary["forwarded"] == 0 and summary["outbox"]["pending"] == summary["new_in_outbox"]
    assert "results wait in the outbox" in offline.stderr
    forward = [EDGE, "forward", "--outbox", str(outbox), "--device", device,
               "--kafka", settings.kafka_bootstrap]  # fmt: skip
    sent = subprocess.run(forward, capture_output=True, text=True, timeout=300, check=False)
    assert sent.returncode == 0, sent.stderr[-2000:]
    assert json.loads(sent.stdout)["forwarded"] == summary["new_in_outbox"]
    again = subprocess.run(forward, capture_output=True, text=True, timeout=300, check=False)
    assert json.loads(again.stdout)["forwarded"] == 0
    _assert_exactly_once(settings, device, outbox)
    # once acknowledged, rows are pruned down to the cap (the newest kept)
    pruned = subprocess.run(
        [*forward, "--max-sent-rows", "10"], capture_output=True, text=True, timeout=300
    )
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    left = json.loads(pruned.stdout)["outbox"]
    assert left["sent"] == 10 and left["pending"] == 0 and left["beats"] + left["alarms"] == 10


def test_a_crash_after_kafkas_commit_sends_nothing_twice(
    settings: Settings, bundle: Path, mitdb_dir: Path, tmp_path: Path
) -> None:
    device = f"edge-{uuid.uuid4().hex[:6]}"
    outbox_path = tmp_path / "outbox.sqlite"
    offline = subprocess.run(
        _run(bundle, outbox_path, device, mitdb_dir, "--speed", "0", "--seconds", "900"),
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert json.loads(offline.stdout.splitlines()[-1])["new_in_outbox"] > BATCH
    outbox = Outbox(outbox_path)
    target = KafkaTarget(settings.kafka_bootstrap, settings.topics.beats, settings.topics.alerts)

    class PowerCutError(Exception):
        pass

    real_mark_sent = outbox.mark_sent

    def power_cut(message_ids: list[str], state: dict[str, str] | None = None) -> None:
        if message_ids:  # the first batch is committed in Kafka, then the device dies
            raise PowerCutError

    outbox.mark_sent = power_cut  # type: ignore[method-assign]

    async def first_life() -> None:
        stop = asyncio.Event()
        stop.set()
        await KafkaForwarder(outbox, target, device)._session(stop, 0.1)

    with pytest.raises(PowerCutError):
        asyncio.run(first_life())
    outbox.mark_sent = real_mark_sent  # type: ignore[method-assign]
    assert outbox.counts()["sent"] == 0  # SQLite does not know the batch went out

    async def second_life() -> int:
        stop = asyncio.Event()
        stop.set()
        forwarder = KafkaForwarder(outbox, target, device)
        await forwarder.run(stop)
        return forwarder.sent

    resent = asyncio.run(second_life())
    total = outbox.counts()["beats"] + outbox.counts()["alarms"]
    assert resent == total - BATCH  # the first batch was found in Kafka, not sent again
    outbox.close()
    _assert_exactly_once(settings, device, outbox_path)


def test_a_runner_killed_mid_stream_and_restarted_sends_every_beat_once(
    settings: Settings, bundle: Path, mitdb_dir: Path, tmp_path: Path
) -> None:
    device = f"edge-{uuid.uuid4().hex[:6]}"
    outbox = tmp_path / "outbox.sqlite"
    command = _run(bundle, outbox, device, mitdb_dir, "--speed", "40", "--seconds", "360",
                   "--kafka", settings.kafka_bootstrap)  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until some results are out, then pull the plug
        time.sleep(0.5)
        if outbox.exists() and _sent(outbox) > 50:
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    partial = _sent(outbox)
    assert partial > 50
    second = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout.splitlines()[-1])
    assert summary["outbox"]["pending"] == 0 and summary["forwarded"] > 0
    _assert_exactly_once(settings, device, outbox)


def _sent(outbox: Path) -> int:
    box = Outbox(outbox)
    try:
        return box.counts()["sent"]
    finally:
        box.close()
