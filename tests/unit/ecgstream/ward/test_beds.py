from pathlib import Path

import numpy as np
import pytest

from ecgstream.records import load_record
from ecgstream.ward.beds import Bed, Ward, WardRules
from ecgstream.wire import EcgChunk, make_chunk

RULES = WardRules(strip_hz=120, keep_s=60, tile_s=10, stale_after_s=5)


def chunks(
    record_dir: Path,
    name: str,
    seconds: int,
    size: int = 360,
    session: str = "boot-1",
    device: str = "bed-1",
) -> list[EcgChunk]:
    record = load_record(record_dir, name)
    return [
        make_chunk(
            device_id=device,
            patient_id="pt-x",
            seq=i,
            first_sample=i * size,
            start_time=1_000.0 + i * size / record.fs,
            fs=record.fs,
            lead_names=record.lead_names,
            adc_gain=record.adc_gain,
            adc_baseline=record.adc_baseline,
            samples=record.digital[:, i * size : (i + 1) * size],
            session=session,
        )
        for i in range(seconds * 360 // size)
    ]


def test_the_strip_is_the_records_first_lead_averaged_to_the_drawing_rate(mitdb_dir: Path) -> None:
    bed = Bed("bed-1", RULES)
    for chunk in chunks(mitdb_dir, "119", 20):
        bed.add_chunk(chunk, now=0)
    record = load_record(mitdb_dir, "119")
    mv = (record.digital[0, : 20 * 360] - record.adc_baseline[0]) / record.adc_gain[0]
    expected = mv.reshape(-1, 3).mean(axis=1)
    strip = bed.strip(60)
    assert bed.lead == "MLII"
    assert len(strip["mv"]) == len(expected) == 2400
    np.testing.assert_allclose(strip["mv"], expected, atol=6e-4)  # rounded to a microvolt
    assert np.all(np.diff(strip["t"]) > 0)
    assert strip["t"][0] == pytest.approx(1_000.0 + 1 / 360, abs=1e-4)  # mid first 3 samples


def test_any_chunking_and_a_redelivery_give_the_same_strip(mitdb_dir: Path) -> None:
    whole = Bed("a", RULES)
    for chunk in chunks(mitdb_dir, "208", 12, size=360):
        whole.add_chunk(chunk, 0)
    odd = Bed("b", RULES)
    pieces = chunks(mitdb_dir, "208", 12, size=540)
    for chunk in pieces[:5] + pieces[3:]:  # two chunks delivered twice
        odd.add_chunk(chunk, 0)
    assert odd.strip(60) == whole.strip(60)


def test_the_strip_keeps_a_minute_and_new_points_are_handed_out_once(mitdb_dir: Path) -> None:
    bed = Bed("bed-1", RULES)
    for chunk in chunks(mitdb_dir, "101", 90):
        bed.add_chunk(chunk, 0)
    assert len(bed.strip(600)["t"]) <= 60 * 120 + 1
    times, _ = bed.take_new_points()
    assert len(times) == 90 * 120
    assert bed.take_new_points() == ([], [])
    tile = bed.strip(10)
    assert tile["t"][-1] - tile["t"][0] <= 10


def test_a_gap_breaks_the_line_and_a_reboot_starts_a_new_strip(mitdb_dir: Path) -> None:
    bed = Bed("bed-1", RULES)
    pieces = chunks(mitdb_dir, "101", 6)
    for chunk in pieces[:2] + pieces[4:]:  # chunks 2 and 3 never came
        bed.add_chunk(chunk, 0)
    assert bed.strip(60)["mv"].count(None) == 1
    rebooted = chunks(mitdb_dir, "101", 2, session="boot-2")
    bed.add_chunk(rebooted[0], 1)  # samples from 0 again: a new session, not a redelivery
    assert bed.take_new_points()[0][-1] == rebooted[0].start_time + 358 / 360


def beat(
    sample: int, time: float, label: str = "N", rr: float | None = 0.8, fault: str | None = None
) -> dict:
    return {
        "device": "bed-1",
        "session": "",
        "sample": sample,
        "time": time,
        "label": label,
        "rr_prev_s": rr,
        "analysable": fault is None,
        "signal_fault": fault,
    }


def test_heart_rate_signal_and_ectopy_come_from_the_recent_beats() -> None:
    ward = Ward(RULES)
    bed = ward.bed("bed-1")
    assert bed.heart_rate() is None and bed.signal(0) == "no signal"
    for i in range(20):
        ward.add_beat(beat(i * 288, 100 + i * 0.8, "V" if i % 5 == 0 else "N"))
    assert bed.heart_rate() == 75
    assert bed.ectopy() == {"S": 0, "V": 4}
    ward.add_beat(beat(20 * 288, 116.0, fault="lead_off"))
    bed._last_chunk_at = 200.0
    assert bed.signal(201) == "lead_off"
    assert bed.signal(206) == "no signal"
    summary = bed.summary(201, "vtach")
    assert summary["rhythm"] == "VT" and "patient" not in str(summary)


def test_a_redelivered_beat_is_kept_once() -> None:
    bed = Bed("bed-1", RULES)
    for _ in range(2):
        for i in range(5):
            bed.add_beat(beat(i * 288, 100 + i * 0.8))
    assert len(bed.strip(60)["beats"]) == 0  # beats are shown on the strip's time span only
    assert bed.ectopy() == {"S": 0, "V": 0} and len(bed._beats) == 5
