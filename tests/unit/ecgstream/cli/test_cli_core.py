"""The ECG-core commands as a user runs them (real records, the shipped model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecgstream.alarms import CLINICAL_KINDS
from ecgstream.cli.app import expand_multi_value_options

ECGSTREAM = str(Path(sys.executable).with_name("ecgstream"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ECGSTREAM, *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_records_option_takes_several_values() -> None:
    argv = ["evaluate", "--records", "101", "106", "--json", "x.json", "--records", "108"]
    assert expand_multi_value_options(argv) == [
        "evaluate", "--records", "101", "--records", "106", "--json", "x.json",
        "--records", "108",
    ]  # fmt: skip


def test_evaluate_writes_the_ec57_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _run(
        "evaluate", "--records", "101", "102", "--json", str(out), "--plots", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"qrs", "classes", "macro_f1", "records", "alarms"}
    alarms = report["alarms"]
    assert set(alarms) == {
        "patient_hours", "alarms_per_hour", "false_alarms_per_hour", "ppv", "kinds", "afib",
        "technical",
    }  # fmt: skip
    assert set(alarms["technical"]) == {
        "alarms", "alarms_per_hour", "unanalysable_s", "inhibited_alarms",
        "episodes_in_inhibition",
    }  # fmt: skip
    assert alarms["patient_hours"] == pytest.approx(2 * 1805.56 / 3600, abs=0.01)
    assert set(alarms["kinds"]) == set(CLINICAL_KINDS)
    assert set(alarms["kinds"]["vtach"]) == {
        "episodes", "detected", "se", "alarms", "true_alarms", "ppv", "delay_s_median",
        "delay_s_max",
    }  # fmt: skip
    assert set(alarms["afib"]) == {"episode_se", "episode_ppv", "duration_se", "duration_ppv"}
    assert "Rhythm alarms" in result.stdout
    assert set(report["classes"]) == {"N", "S", "V", "F"}
    assert set(report["records"]) == {"101", "102"}
    assert report["records"]["102"]["paced"] is True
    assert report["qrs"]["se"] > 0.99
    assert report["qrs"]["ppv"] > 0.99
    assert "gross" in result.stdout
    for png in ("confusion.png", "strip_101.png", "strip_102.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_names_a_missing_record() -> None:
    result = _run("evaluate", "--records", "999")
    assert result.returncode == 1
    assert "record 999 not found" in result.stderr


def test_download_without_network_fails_clearly(tmp_path: Path) -> None:
    result = _run(
        "data", "download", "--out", str(tmp_path), "--records", "100",
        "--base-url", "http://127.0.0.1:9/",
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not download 'mitdb'" in result.stderr
    assert "ECGSTREAM_DATA_DIR" in result.stderr


def test_crossval_then_train_with_its_figures_in_the_card(tmp_path: Path) -> None:
    """A small run of the shipped commands: the crossval JSON keeps evaluate's keys and adds
    folds and intervals; train takes that report into the model card, and only for the recipe
    it cross-validated."""
    report_path = tmp_path / "cv.json"
    records = ["--records", "119", "--records", "209", "--records", "220", "--records", "223"]
    result = _run("crossval", "--folds", "2", *records, "--epochs", "1", "--json", str(report_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert {"qrs", "classes", "macro_f1", "records", "folds", "intervals", "recipe"} <= set(report)
    assert sorted(report["records"]) == ["119", "209", "220", "223"]
    assert [len(fold["records"]) for fold in report["folds"]] == [2, 2]
    for fold in report["folds"]:  # every choice was made on training patients
        assert not set(fold["validation_records"]) & set(fold["records"])
    assert report["intervals"]["V_se"]["low"] <= report["classes"]["V"]["se"]
    assert report["recipe"]["name"] == "patient-relative-v2"

    wrong = _run(
        "train", "--out", str(tmp_path / "m0"), "--recipe", "rr-template-v1", *records,
        "--epochs", "1", "--crossval", str(report_path),
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "cross-validates recipe 'patient-relative-v2'" in wrong.stderr + wrong.stdout
    trained = _run(
        "train", "--out", str(tmp_path / "m"), *records, "--epochs", "1",
        "--crossval", str(report_path),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["recipe"] == "patient-relative-v2"
    assert card["metrics"]["crossval"]["classes"] == report["classes"]
    assert card["metrics"]["crossval"]["intervals"] == report["intervals"]
    assert card["data"]["source"] == Path(card["data"]["source"]).name  # no machine path


def test_noise_test_scores_each_snr_and_nstdbs_own_records(tmp_path: Path) -> None:
    out = tmp_path / "noise.json"
    result = _run(
        "noise-test", "--records", "119", "--noise", "ma", "--snr", "6", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["noise"], r["snr_db"]) for r in rows] == [
        ("none", None), ("em (nstdb)", 0.0), ("em (nstdb)", 6.0), ("em (nstdb)", 12.0),
        ("em (nstdb)", 24.0), ("ma", 6.0),
    ]  # fmt: skip
    clean, *_, noisy = rows
    assert clean["qrs"]["se"] > 0.99 and noisy["records"] == ["119ma06"]
    assert noisy["qrs"]["se"] < clean["qrs"]["se"] or noisy["qrs"]["ppv"] < clean["qrs"]["ppv"]
    assert all(isinstance(r["false_lethal_alarms_per_hour"], float) for r in rows)
    # muscle noise at 6 dB is partly judged unanalysable (inhibited); the clean record never
    assert clean["unanalysable_share"] == 0.0 and noisy["unanalysable_share"] > 0.0
    assert all(isinstance(r["inhibited_alarms"], int) for r in rows)
