"""`ecgstream plan` and the deployment guide: the recommendation follows the situation, and
every number the guide prints recomputes from the benchmark outputs it cites."""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ecgstream.planning.figures import REPO_RESULTS, Evidence
from ecgstream.planning.guide import render_guide
from ecgstream.planning.planner import Situation, recommend
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
GUIDE = ROOT / "docs" / "deployment-guide.md"


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return Evidence([REPO_RESULTS])


@pytest.mark.parametrize(
    ("situation", "deployment"),
    [
        (Situation(500, "internal", "realtime"), "streaming"),
        (Situation(20_000, "internal", "realtime"), "streaming"),
        (Situation(2000, "public", "interactive"), "rest"),
        (Situation(2000, "internal", "batch"), "rest"),
        (Situation(50, "public", "realtime", connectivity="none"), "edge"),
        (Situation(50, "internal", "realtime", connectivity="intermittent"), "edge"),
        (Situation(50, "internal", "interactive", hardware="microcontroller"), "edge"),
    ],
)
def test_the_recommendation_follows_the_situation(
    evidence: Evidence, situation: Situation, deployment: str
) -> None:
    plan = recommend(situation, evidence)
    assert plan.deployment == deployment
    assert plan.reasons and plan.sizing and len(plan.alternatives) == 2
    assert deployment not in plan.alternatives


def test_streaming_sizing_grows_with_the_patients_and_comes_from_the_benchmarks(
    evidence: Evidence,
) -> None:
    small = {i.label: i.figure for i in recommend(Situation(500), evidence).sizing}
    large = {i.label: i.figure for i in recommend(Situation(20_000), evidence).sizing}
    for label in ("cores (at half of the measured capacity)",
                  "Serve classifier replicas (the autoscaling floor)",
                  "Kafka partitions of ecg.samples", "Kafka in (signal)"):  # fmt: skip
        assert large[label].value > small[label].value, label
    # autoscaling's ceilings: twice the floors (a backlog drains at twice real time), and no
    # more consumers than partitions
    for floor, ceiling in (
        ("consumer actors (the autoscaling floor)",
         "consumer actors at most (catch-up at twice real time)"),
        ("Serve classifier replicas (the autoscaling floor)", "Serve classifier replicas at most"),
    ):  # fmt: skip
        assert large[ceiling].value == 2 * large[floor].value
    assert (
        large["Kafka partitions of ecg.samples"].value
        >= large["consumer actors at most (catch-up at twice real time)"].value
    )
    pipeline = json.loads((REPO_RESULTS / "bench_pipeline.json").read_text())
    bandwidth = json.loads((REPO_RESULTS / "bench_bandwidth.json").read_text())
    per_core = large["real-time patients per core (measured)"].value
    assert per_core == pipeline["realtime_patients"] / evidence.figure("bench_api", "cpus").value
    assert large["cores (at half of the measured capacity)"].value == math.ceil(
        20_000 * 2 / per_core
    )
    assert large["Kafka in (signal)"].value == pytest.approx(
        20_000 * bandwidth["kafka_in_bytes_per_patient_s"] / 1000
    )


def test_the_guide_is_current(evidence: Evidence) -> None:
    assert GUIDE.read_text() == render_guide(evidence), (
        "regenerate: ecgstream plan --patients 1 --access internal --latency realtime "
        "--guide docs/deployment-guide.md"
    )


def test_every_number_in_the_guide_traces_to_a_benchmark_output() -> None:
    text = GUIDE.read_text()
    body, sources = text.split("## Sources", 1)
    rows = re.findall(r"^\| \[(\d+)\] \| ([\d,.]+) \| `(.+)` \|$", sources, re.MULTILINE)
    assert len(rows) > 30
    for _index, printed, formula in rows:
        digits = len(printed.split(".")[1]) if "." in printed else 0
        value = _evaluate(formula)
        assert f"{value:,.{digits}f}" == printed, (formula, value, printed)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    assert cited == {int(i) for i, _, _ in rows}
    # no uncited number in the body's tables and prose (names such as p50 or int8 aside)
    stripped = re.sub(r"[\d,.]+ [^|\[\n]*?\[\d+\]", "", body)
    stripped = re.sub(r"<!--.*?-->", "", stripped, flags=re.DOTALL)
    stripped = re.sub(r"`ecgstream plan[^`]*`", "", stripped)
    stripped = re.sub(r"\b(p50|p99|int8|fp32)\b|^### .*$", "", stripped, flags=re.MULTILINE)
    # the examples' own inputs, not measurements
    stripped = re.sub(r"per patient per hour \(--requests-per-patient-hour\): [\d.]+", "", stripped)
    assert not re.findall(r"\d", stripped), re.findall(r".{20}\d.{20}", stripped)


def _evaluate(formula: str) -> float:
    """The formula with each `file.json:key/path` read from that file, then arithmetic only."""

    def read(match: re.Match[str]) -> str:
        value = json.loads((REPO_RESULTS / match.group(1)).read_text())
        for key in match.group(2).split("/"):
            value = value[key]
        return repr(float(value))

    expression = re.sub(r"([a-z_]+\.json):([^\s()]+)", read, formula)
    tree = ast.parse(expression, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div,
               ast.Call, ast.Name, ast.Load)  # fmt: skip
    for node in ast.walk(tree):
        assert isinstance(node, allowed), ast.dump(node)
        if isinstance(node, ast.Name):
            assert node.id in {"ceil", "max"}
    return float(
        eval(compile(tree, "<formula>", "eval"), {"__builtins__": {}, "ceil": _ceil, "max": max})
    )


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-9)


def test_plan_prints_a_sized_recommendation_with_its_evidence() -> None:
    cli = str(Path(sys.executable).with_name("ecgstream"))
    done = subprocess.run(
        [cli, "plan", "--patients", "500", "--latency", "realtime", "--access", "internal"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Recommended: streaming" in done.stdout
    assert "Serve classifier replicas" in done.stdout and "bench_pipeline.json" in done.stdout
    as_json = subprocess.run(
        [cli, "plan", "--patients", "50", "--latency", "interactive", "--access", "public",
         "--connectivity", "none", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    plan = json.loads(as_json.stdout)
    assert plan["deployment"] == "edge"
    assert set(plan["evidence"]) >= {"bench_edge", "bench_bandwidth"}
    refused = subprocess.run(
        [cli, "plan", "--patients", "5", "--latency", "soon", "--access", "internal"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "--latency is one of" in refused.stderr


def test_measure_writes_fresh_evidence_that_the_plan_prefers(tmp_path: Path) -> None:
    from ecgstream.planning.measure import measure_here

    written = measure_here(tmp_path, edge_records=("119",))
    assert set(written) == {"bench_bandwidth", "bench_edge"}
    evidence = Evidence([tmp_path, REPO_RESULTS])
    assert evidence.files["bench_edge"] == tmp_path / "bench_edge.json"
    assert evidence.files["bench_pipeline"] == REPO_RESULTS / "bench_pipeline.json"
    plan = recommend(Situation(10, connectivity="none"), evidence)
    memory = next(i for i in plan.sizing if i.label.startswith("memory"))
    assert memory.figure.value == json.loads(written["bench_edge"].read_text())["peak_rss_mb"]
