"""The privacy audit scanner on planted leaks: log trees, expositions, a stand-in Prometheus API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgstream.audit import (
    AuditReport,
    Needles,
    SampleWindows,
    dead_letter_texts,
    merge,
    scan_exposition,
    scan_log_roots,
    scan_prometheus,
    scan_texts,
    workload_identifiers,
)
from ecgstream.cli.app import app
from ecgstream.io.device_simulator import ReplayDevice, plan_devices, pseudonym

DEVICE = "dev-0003"
PATIENT = pseudonym(DEVICE)
NEEDLES = Needles(exact=(DEVICE, PATIENT), patterns=(r"\bdev-\d{4}\b", r"\bpt-[0-9a-f]{12}\b"))

# lines a healthy stack writes: timestamps, pids, ports, ids, a few numbers, ranges, buckets
CLEAN_LINES = [
    "[2026-11-27 03:27:40,574 I 24217 24217] (raylet) node_manager.cc:1023: Started worker "
    "pid 24389 on port 10002 (ports 10002, 10003, 10004, 10005)",
    "INFO 2026-11-27 03:27:40,574 ecgstream-inference_BeatClassifier 0g8owuwm "
    "c0097571-ee2e-4150-b8d3-09dd0b58898e -- CALL __call__ OK 10.4ms",
    "(ConsumerActor pid=31552, ip=127.0.0.1) batch 12: 340 beats, 3 alarms, lag 0 0 1 2, "
    "p50 0.041 p99 0.212 s",
    "assigned partitions [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]",
    "latency buckets (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0) seconds",
    "2026-11-27T03:27:40.574Z kafka.server.KafkaServer [KafkaServer id=1] started "
    "(kafka.server.KafkaServer) 9092 9093",
    "worker-48b5e16a931d0695651409fdc6ee7f115880d48b10794c8ceeebac16-01000000-11900.err",
    "2026-11-27 03:33:46,941\tINFO log_monitor.py:304 -- Beginning to track file "
    "worker-6bb1a56ea188bf42d6cd1e062ceda0db597edde2e8a4b9c686fbc6f5-05000000-15482.out",
    "LOG:  checkpoint complete: wrote 42 buffers (0.3%); 0 WAL file(s) added, 0 removed, "
    "1 recycled; write=4.117 s, sync=0.003 s, total=4.131 s",
    "resources {'CPU': 16.0, 'memory': 137438953472.0, 'GPU': 0.0} at 12:01:02",
]


def _signal(n: int, seed: int = 7) -> np.ndarray:
    """An ECG-like int16 trace around the MIT-BIH baseline of 1024."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 360.0
    wave = 1024 + 120 * np.sin(2 * np.pi * 1.2 * t) + rng.normal(0, 6, n)
    return np.round(wave).astype(np.int16)


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _clean_tree(root: Path) -> None:
    _write(root / "state" / "logs" / "kafka.log", CLEAN_LINES)
    _write(root / "state" / "logs" / "ray.log.1", CLEAN_LINES[::-1])
    session = root / "ray" / "session_2026-11-27_03-25-40_317870_11009" / "logs"
    _write(session / "raylet.out", CLEAN_LINES)
    _write(session / "serve" / "replica_ecgstream-inference_BeatClassifier_0g8owuwm.log", [])


def test_a_clean_tree_passes_and_is_counted(tmp_path: Path) -> None:
    _clean_tree(tmp_path)
    report = scan_log_roots([tmp_path / "state" / "logs", tmp_path / "ray"], NEEDLES)
    assert report.ok, report.to_json()
    assert report.scanned == {"files": 4, "lines": 3 * len(CLEAN_LINES)}
    with pytest.raises(FileNotFoundError):  # a missing directory is not a clean one
        scan_log_roots([tmp_path / "state" / "log"], NEEDLES)


def test_a_device_id_in_a_nested_log_is_found_at_its_line(tmp_path: Path) -> None:
    _clean_tree(tmp_path)
    nested = tmp_path / "ray" / "session_x" / "logs" / "serve" / "deep" / "worker-1.err"
    _write(nested, [*CLEAN_LINES[:2], f"WARNING chunk from {DEVICE} arrived late (seq 5)"])
    report = scan_log_roots([tmp_path], NEEDLES)
    assert not report.ok
    [finding] = report.findings
    assert finding.kind == "identifier"
    assert finding.source == str(nested)
    assert finding.location == f"{nested}:3"
    assert finding.excerpt == "WARNING chunk from <id> arrived late (seq 5)"


def test_a_patient_ref_matched_only_by_the_pattern_is_found(tmp_path: Path) -> None:
    other = pseudonym("dev-0999")  # not among the exact ids
    _write(tmp_path / "a.log", ["ok", f"alarm for patient {other}: VT"])
    [finding] = scan_log_roots([tmp_path], NEEDLES).findings
    assert (finding.location, finding.excerpt) == (
        f"{tmp_path / 'a.log'}:2",
        "alarm for patient <id>: VT",
    )


def test_a_sample_run_in_one_line_is_found_and_hidden(tmp_path: Path) -> None:
    samples = _signal(40).tolist()
    _write(tmp_path / "worker.out", [*CLEAN_LINES, f"debug window={samples} lead MLII"])
    [finding] = scan_log_roots([tmp_path], NEEDLES).findings
    assert finding.kind == "samples"
    assert finding.location.endswith(f"worker.out:{len(CLEAN_LINES) + 1}")
    assert finding.excerpt.startswith("debug window=[<")
    assert str(samples[0]) not in finding.excerpt and len(finding.excerpt) <= 120


def test_a_numpy_print_wrapped_over_lines_is_found_once(tmp_path: Path) -> None:
    millivolts = (_signal(60).astype(np.float32) - 1024) / 200
    printed = repr(millivolts).splitlines()
    assert len(printed) > 3 and all(line.count(",") < 16 for line in printed)
    _write(tmp_path / "worker.err", ["beat window:", *printed, "done"])
    # the driver's copy of a worker's output: Ray puts the actor and pid before each line
    echoed = [f"(ConsumerActor pid=12, ip=127.0.0.1) {line}" for line in printed]
    _write(tmp_path / "driver.log", ["(ConsumerActor pid=12, ip=127.0.0.1) beat window:", *echoed])
    findings = scan_log_roots([tmp_path], NEEDLES).findings
    assert [(Path(f.source).name, f.kind) for f in findings] == [
        ("driver.log", "samples"),
        ("worker.err", "samples"),
    ]


def test_a_long_base64_blob_is_found(tmp_path: Path) -> None:
    import base64

    blob = base64.b64encode(_signal(400).tobytes()).decode()
    _write(tmp_path / "x.log", [f"payload={blob}"])
    [finding] = scan_log_roots([tmp_path], NEEDLES).findings
    assert finding.kind == "samples" and blob[:20] not in finding.excerpt


def test_workload_sample_windows_find_eight_values_as_adc_and_as_millivolts() -> None:
    adc = _signal(2000)
    adc[1000:1100] = 1024  # leads off: a flat line
    mv = (adc.astype(np.float32) - 1024) / 200
    windows = SampleWindows.build(adc=[adc[None, :]], millivolts=[mv])
    needles = Needles(patterns=NEEDLES.patterns, windows=windows)
    texts = {
        "ints": f"values {adc[500:508].tolist()} end",
        "floats": "mv " + " ".join(f"{v:.3f}" for v in mv[900:908]),
        "other": f"values {(adc[500:508] + 1).tolist()} and 10 20 30 40 50 60 70 80",
        "short": f"values {adc[500:507].tolist()}",
        "flat": f"{[1024] * 12} and " + " ".join(["0.000"] * 12),
    }
    report = scan_texts(texts, needles)
    assert sorted(f.location for f in report.findings) == ["floats:1", "ints:1"]
    assert all(f.kind == "samples" for f in report.findings)
    assert str(int(adc[500])) not in report.to_json()


def test_needles_from_a_workload_of_replay_devices() -> None:
    devices = plan_devices(["101", "106"], 3, {"101": 1805.0, "106": 1805.0}, "e2e1a2b3c")
    needles = Needles.from_workload(devices, adc=[_signal(100)])
    exact, _ = workload_identifiers(devices)
    assert set(exact) == {d.device_id for d in devices} | {d.patient_id for d in devices}
    assert needles.windows is not None and len(needles.windows) > 0
    report = scan_texts(
        {
            "hit": "late e2e1a2b3c-0042 and e2e1a2b3c-0001",
            "ref": f"patient {devices[2].patient_id}",
            "uuid": "request c0097571-ee2e-4150-b8d3-09dd0b58898e e2e1a2b3cd-0001 xe2e1a2b3c-0001",
        },
        needles,
    )
    assert [f.location for f in report.findings] == ["hit:1", "ref:1"]
    assert report.findings[0].excerpt == "late <id> and <id>"
    assert workload_identifiers(["dev-0007"])[0] == ("dev-0007", pseudonym("dev-0007"))
    assert workload_identifiers([ReplayDevice("bed-0001", "", "101", 0)])[0] == ("bed-0001",)


def test_the_report_json_never_holds_the_identifier(tmp_path: Path) -> None:
    long_line = "lorem ipsum " * 30 + f"device={DEVICE} patient={PATIENT} " + "dolor " * 50
    _write(tmp_path / f"{DEVICE}.log", [long_line])
    report = scan_log_roots([tmp_path], NEEDLES)
    text = report.to_json()
    assert not report.ok and DEVICE not in text and PATIENT not in text
    assert json.loads(text)["ok"] is False
    assert {f.kind for f in report.findings} == {"identifier"}
    assert len(report.findings) == 2  # the file's name and its line
    assert all(len(f.excerpt) <= 120 and "<id>" in f.excerpt for f in report.findings)


def test_binary_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "core.dump").write_bytes(b"\x00\x01binary " + DEVICE.encode() + b"\x00")
    _write(tmp_path / "ok.log", CLEAN_LINES)
    report = scan_log_roots([tmp_path], NEEDLES)
    assert report.ok
    assert report.scanned == {"files": 1, "lines": len(CLEAN_LINES), "binary_files_skipped": 1}


def test_findings_of_one_file_are_capped_and_counted(tmp_path: Path) -> None:
    _write(tmp_path / "chatty.log", [f"beat of {DEVICE} #{i}" for i in range(30)])
    report = scan_log_roots([tmp_path], NEEDLES, limit=10)
    assert (len(report.findings), report.suppressed, report.ok) == (10, 20, False)


EXPOSITION = """\
# HELP ecgstream_beats_total Classified beats by predicted class
# TYPE ecgstream_beats_total counter
ecgstream_beats_total{class="N"} 1200.0
ecgstream_beats_total{class="V"} 14.0
# HELP ecgstream_dead_letters_total Rejected input messages by reason
# TYPE ecgstream_dead_letters_total counter
ecgstream_dead_letters_total{reason="not_msgpack"} 1.0
# HELP ecgstream_consumer_lag Kafka lag by partition
# TYPE ecgstream_consumer_lag gauge
ecgstream_consumer_lag{partition="0"} 3.0
ecgstream_consumer_lag{partition="11"} 0.0
"""


def test_a_clean_exposition_passes() -> None:
    report = scan_exposition(EXPOSITION, "http://monitor/metrics", NEEDLES)
    assert report.ok
    assert report.scanned == {"expositions": 1, "metric_samples": 5, "label_values": 5}


def test_a_patient_ref_in_a_label_value_is_found() -> None:
    leaky = EXPOSITION + f'ecgstream_consumer_lag{{partition="1",patient="{PATIENT}"}} 2.0\n'
    report = scan_exposition(leaky, "http://monitor/metrics", NEEDLES)
    [finding] = report.findings
    assert finding.location == "metric ecgstream_consumer_lag label patient"
    assert (finding.kind, finding.excerpt) == ("identifier", "<id>")
    assert PATIENT not in report.to_json()


def test_dead_letter_headers_are_scanned() -> None:
    @dataclass
    class Record:
        partition: int
        offset: int
        headers: list[tuple[str, bytes]]

    good = Record(0, 4, [("reason", b"not_msgpack"), ("detail", b"not a msgpack document")])
    bad = Record(1, 5, [("reason", b"invalid_value"), ("detail", f"device {DEVICE}".encode())])
    report = scan_texts(dead_letter_texts([good, bad], "ecg.deadletter"), NEEDLES)
    assert [f.location for f in report.findings] == ["ecg.deadletter/1/5:2"]
    assert report.findings[0].excerpt == "detail=device <id>"


class _FakePrometheus(BaseHTTPRequestHandler):
    series: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        data: Any
        if url.path == "/api/v1/series":
            assert parse_qs(url.query)["match[]"] == ['{__name__=~".+"}']
            data = self.series
        elif url.path == "/api/v1/labels":
            data = sorted({name for s in self.series for name in s})
        elif url.path.startswith("/api/v1/label/") and url.path.endswith("/values"):
            name = url.path.split("/")[4]
            data = sorted({s[name] for s in self.series if name in s})
        else:
            self.send_error(404)
            return
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[tuple[str, type[_FakePrometheus]]]:
    handler = type("Handler", (_FakePrometheus,), {"series": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


CLEAN_SERIES = [
    {"__name__": "ecgstream_beats_total", "class": "N", "job": "ecgstream"},
    {"__name__": "ray_node_cpu_utilization", "instance": "127.0.0.1:8080", "NodeAddress": "x"},
]


def test_clean_prometheus_series_pass(prometheus: tuple[str, type[_FakePrometheus]]) -> None:
    url, handler = prometheus
    handler.series = CLEAN_SERIES
    report = scan_prometheus(url, NEEDLES)
    assert report.ok
    assert report.scanned["series"] == 2 and report.scanned["label_names"] == 5


def test_a_device_id_in_a_prometheus_series_is_found(
    prometheus: tuple[str, type[_FakePrometheus]],
) -> None:
    url, handler = prometheus
    handler.series = [*CLEAN_SERIES, {"__name__": "ecgstream_lag", "device": DEVICE}]
    report = scan_prometheus(url, NEEDLES)
    locations = sorted(f.location for f in report.findings)
    assert locations == ["label device values", "series ecgstream_lag label device"]
    assert DEVICE not in report.to_json()


def test_the_cli_exits_1_on_findings_and_writes_redacted_json(
    tmp_path: Path, prometheus: tuple[str, type[_FakePrometheus]]
) -> None:
    url, handler = prometheus
    handler.series = CLEAN_SERIES
    _clean_tree(tmp_path)
    out = tmp_path / "audit.json"
    runner = CliRunner()
    args = ["audit", "privacy", "--logs", str(tmp_path / "state"), "--logs", str(tmp_path / "ray")]
    args += ["--prometheus", url, "--replay-devices", "dev:8", "--json", str(out)]
    clean = runner.invoke(app, args)
    assert clean.exit_code == 0, clean.output
    assert json.loads(out.read_text())["ok"] is True

    _write(tmp_path / "ray" / "late.log", [f"slow consumer for {DEVICE}"])
    leaky = runner.invoke(app, args)
    assert leaky.exit_code == 1, leaky.output
    assert "privacy audit failed" in leaky.output and DEVICE not in leaky.output
    report = json.loads(out.read_text())
    assert [f["location"] for f in report["findings"]] == [f"{tmp_path / 'ray' / 'late.log'}:1"]


def test_merge_adds_counts() -> None:
    a = AuditReport(scanned={"files": 2, "lines": 10})
    b = scan_texts({"t": f"x {DEVICE}"}, NEEDLES)
    merged = merge(a, b)
    assert merged.scanned == {"files": 2, "lines": 10, "texts": 1, "text_lines": 1}
    assert len(merged.findings) == 1 and not merged.ok
