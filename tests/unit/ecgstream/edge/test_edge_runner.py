"""The edge runner with no service: its own WFDB reader, the minimal-dependency promise (checked
by running it where torch, Ray, Kafka and PostgreSQL clients cannot be imported), parity with the
server on every DS1 record, and an outbox that neither repeats nor loses a beat over restarts."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgstream.benchmarks.edge import edge_parity
from ecgstream.edge.export import export_bundle
from ecgstream.edge.outbox import Outbox
from ecgstream.edge.wfdb_reader import open_wfdb
from ecgstream.records import load_record
from ecgstream.splits import DS1

# what an edge device does not have: the runner must not even try to import these
FORBIDDEN = (
    "torch", "ray", "aiokafka", "asyncpg", "wfdb", "pandas", "pydantic", "pydantic_settings",
    "typer", "rich", "msgpack", "fastapi", "matplotlib", "scipy.signal", "scipy.ndimage",
)  # fmt: skip

BLOCKER = """
import importlib.abc, sys
FORBIDDEN = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            raise ImportError(f"{name} is not on an edge device")
sys.meta_path.insert(0, Block())
from ecgstream.edge.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edge") / "bundle"
    export_bundle(None, out)
    return out


def _edge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(FORBIDDEN), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_numpy_reader_equals_wfdb_on_every_record(mitdb_dir: Path) -> None:
    names = sorted(p.stem for p in mitdb_dir.glob("*.hea"))
    assert len(names) >= 20
    for name in names:
        record = open_wfdb(mitdb_dir / name)
        reference = load_record(mitdb_dir, name)
        expected = np.stack([reference.lead(lead) for lead in reference.lead_names])
        assert record.lead_names == tuple(reference.lead_names) and record.fs == reference.fs
        assert np.array_equal(record.millivolts(), expected), name
        # odd chunk edges split the 3-byte pairs of format 212
        begin = 12_345
        assert np.array_equal(
            record.millivolts(begin, begin + 361), expected[:, begin : begin + 361]
        )


def test_the_runner_needs_no_torch_ray_kafka_or_postgres(
    bundle: Path, mitdb_dir: Path, tmp_path: Path
) -> None:
    done = _edge(
        "run", "--bundle", str(bundle), "--device", "edge-min", "--outbox",
        str(tmp_path / "outbox.sqlite"), "--wfdb", str(mitdb_dir / "119"), "--speed", "0",
        "--int8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["variant"] == "int8" and summary["beats"] > 1900  # 119: ~1990 beats
    assert summary["labels"]["V"] > 400  # ventricular bigeminy
    assert summary["alarms"] >= 1 and "ALARM" in done.stderr  # raised locally
    assert summary["outbox"] == {
        "beats": summary["beats"], "alarms": summary["alarms"],
        "pending": summary["beats"] + summary["alarms"], "sent": 0,
    }  # fmt: skip


def test_a_replayed_file_adds_nothing_and_a_live_stream_continues_its_count(
    bundle: Path, mitdb_dir: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    record = mitdb_dir / "101"
    first = _edge(
        "run", "--bundle", str(bundle), "--device", "d1", "--outbox", str(outbox),
        "--wfdb", str(record), "--speed", "0", "--seconds", "120",
    )  # fmt: skip
    again = _edge(
        "run", "--bundle", str(bundle), "--device", "d1", "--outbox", str(outbox),
        "--wfdb", str(record), "--speed", "0", "--seconds", "120",
    )  # fmt: skip
    assert first.returncode == again.returncode == 0, again.stderr[-2000:]
    a, b = (json.loads(p.stdout.splitlines()[-1]) for p in (first, again))
    assert a["new_in_outbox"] == a["beats"] + a["alarms"] > 100
    assert b["beats"] == a["beats"] and b["new_in_outbox"] == 0

    # stdin: a live device. Its second run goes on from where the first stopped.
    signal = open_wfdb(record).millivolts(0, 360 * 60)
    text = "\n".join(f"{x:.4f},{y:.4f}" for x, y in signal.T)
    live = tmp_path / "live.sqlite"
    args = ("run", "--bundle", str(bundle), "--device", "d2", "--outbox", str(live),
            "--input", "-", "--fs", "360", "--leads", "MLII,V5")  # fmt: skip
    one = _edge(*args, stdin=text + "\nnot,a number\n1.0\n")
    two = _edge(*args, stdin=text)
    assert one.returncode == two.returncode == 0, two.stderr[-2000:]
    s1, s2 = (json.loads(p.stdout.splitlines()[-1]) for p in (one, two))
    assert s1["rejected_lines"] == 2 and s1["samples"] == 360 * 60
    assert s2["new_in_outbox"] == s2["beats"] + s2["alarms"] > 60  # nothing collided
    box = Outbox(live)
    assert box.get("next_sample:d2") == str(2 * 360 * 60)
    samples = [json.loads(p.payload)["sample"] for p in box.pending(10_000) if p.kind == "beat"]
    assert max(samples) > 360 * 60 and len(samples) == len(set(samples))


# records that hold every class (119 V, 208 F and V, 209 S, 223 S, V and F): ~9,000 beats, the
# default suite's parity; the whole of DS1 (~50,000 beats, ~10 minutes) is the slow run
PARITY_RECORDS = ("119", "208", "209", "223")


def _assert_parity(parity: dict, min_beats: int) -> None:
    assert parity["server_beats"] > min_beats
    assert parity["same_beats_fp32"] and parity["same_beats_int8"]
    assert parity["agreement_fp32"] >= 0.999
    changes = parity["int8_sensitivity_change_points"]
    assert set(changes) == {"N", "S", "V", "F"}
    assert all(change >= -1.0 for change in changes.values()), changes


def test_the_edge_gives_the_servers_beats_and_classes_on_every_class(
    bundle: Path, mitdb_dir: Path
) -> None:
    _assert_parity(edge_parity(bundle, mitdb_dir, PARITY_RECORDS), 8_000)


@pytest.mark.slow
def test_the_edge_gives_the_servers_beats_and_classes_on_ds1(bundle: Path, mitdb_dir: Path) -> None:
    _assert_parity(edge_parity(bundle, mitdb_dir, DS1), 50_000)


def test_bench_edge_prints_the_contract_keys(tmp_path: Path, mitdb_dir: Path) -> None:
    out = tmp_path / "bench_edge.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ecgstream")), "bench", "edge", "--records", "119",
         "--json", str(out), "--data", str(mitdb_dir)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("fp32_ms_per_beat", "int8_ms_per_beat", "peak_rss_mb", "fp32_model_bytes",
                "int8_model_bytes", "agreement_fp32", "agreement_int8"):  # fmt: skip
        assert isinstance(result[key], int | float), key
    assert result["agreement_fp32"] >= 0.999 and result["beats"] > 1900
    assert 20 < result["peak_rss_mb"] < 500  # the runner's own process, not the bench's
    assert result["int8_model_bytes"] < result["fp32_model_bytes"]
    assert result["torch_ms_per_beat"] > 0  # the baseline of the same run


def test_the_edge_the_rest_api_and_the_stream_raise_the_same_alarms(
    bundle: Path, mitdb_dir: Path, tmp_path: Path
) -> None:
    """VF and VT in 207's first five minutes: one set of alarms in all three deployments."""
    from ecgstream.artifact import load_artifact
    from ecgstream.edge.bundle import load_edge_model
    from ecgstream.edge.runner import EdgeRunner
    from ecgstream.segment import classify_segment
    from tests.unit.ecgstream.rhythm.test_rhythm import _stream_alarms

    record = load_record(mitdb_dir, "207").head(360 * 300)
    artifact = load_artifact()
    x = np.stack([record.lead(name) for name in record.lead_names])
    rest = classify_segment(artifact, x, record.fs, record.lead_names)["alarms"]
    from_rest = {(a["kind"], a["start_sample"], round(a["raised_time_s"] * 360)) for a in rest}
    stream_ends: list = []
    streamed = {
        (a.kind, a.start_sample, a.raised_sample)
        for _, a in _stream_alarms(record, artifact, 1, ends=stream_ends)
    }
    runner = EdgeRunner(
        load_edge_model(bundle), Outbox(tmp_path / "o.sqlite"), "bed", "", record.fs,
        record.lead_names, 0, 0.0,
    )  # fmt: skip
    edge, edge_beats = [], []
    for begin in range(0, x.shape[1], 360):
        beats, alarms = runner.push(x[:, begin : begin + 360])
        edge, edge_beats = edge + alarms, edge_beats + beats
    beats, alarms = runner.finish()
    edge, edge_beats = edge + alarms, edge_beats + beats
    # one beat/class join: the same beats, RR from the previous beat across chunks, and labels
    # read the same way (the edge's exported model agrees with the artifact on >= 99.9 %)
    rest_beats = classify_segment(artifact, x, record.fs, record.lead_names)["beats"]
    samples = [b["sample"] for b in rest_beats]
    assert [b.sample for b in edge_beats] == samples
    assert [b.rr_prev_s for b in edge_beats][1:] == [
        (b - a) / 360 for a, b in itertools.pairwise(samples)
    ]
    same = sum(e.label == r["label"] for e, r in zip(edge_beats, rest_beats, strict=True))
    assert same >= 0.999 * len(samples) - 1
    from_edge = {
        (e.alarm.kind, e.alarm.start_sample, e.alarm.raised_sample) for e in edge if not e.is_end
    }
    assert {"vfib", "vtach"} <= {kind for kind, _, _ in from_rest}
    # the segment ends where the others flush too: the same stretch, the same code
    assert from_rest == streamed == from_edge
    # VF episodes end, and the end is published the same way by all three
    rest_ends = {
        (a["kind"], a["start_sample"], round(a["end_time_s"] * 360))
        for a in rest
        if a["end_time_s"] is not None
    }
    edge_ends = {(e.alarm.kind, e.alarm.start_sample, e.ended_sample) for e in edge if e.is_end}
    assert "vfib" in {kind for kind, _, _ in rest_ends}
    assert rest_ends == set(stream_ends) == edge_ends
    assert len(stream_ends) == len(set(stream_ends))  # each end once
