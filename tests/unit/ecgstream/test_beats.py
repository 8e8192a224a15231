"""Beat windows and RR features through the whole per-patient stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgstream.beats import RR_FEATURES, BeatConfig, BeatExtractor, feature_names
from ecgstream.records import load_record
from ecgstream.stream import DetectedBeat, PatientStream, PreprocessConfig


def _run(x: np.ndarray, fs: float, chunk: int) -> list[DetectedBeat]:
    stream = PatientStream(fs)
    beats: list[DetectedBeat] = []
    for begin in range(0, x.size, chunk):
        beats += stream.push(x[begin : begin + chunk])
    return beats + stream.flush()


def _same(a: list[DetectedBeat], b: list[DetectedBeat]) -> bool:
    return len(a) == len(b) and all(
        p.device_sample == q.device_sample
        and np.array_equal(p.features.window, q.features.window)
        and np.array_equal(p.features.rr, q.features.rr)
        and p.features.second_lead_qrs == q.features.second_lead_qrs
        for p, q in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("chunk", [13, 360, 5000])
def test_features_do_not_depend_on_chunking(mitdb_dir: Path, chunk: int) -> None:
    x = load_record(mitdb_dir, "119").lead("MLII")[: 360 * 120]  # 119: ventricular bigeminy
    whole = _run(x, 360.0, x.size)
    assert len(whole) > 100
    assert _same(_run(x, 360.0, chunk), whole)


def test_other_sampling_rates_are_resampled_and_keyed_in_device_samples(mitdb_dir: Path) -> None:
    from scipy import signal

    x = load_record(mitdb_dir, "101").lead("MLII")[: 360 * 60]
    native = _run(x, 360.0, 360)
    x500 = signal.resample_poly(x, 25, 18)  # 360 Hz -> 500 Hz
    resampled = _run(x500, 500.0, 500)
    assert _same(_run(x500, 500.0, 97), resampled)
    assert abs(len(resampled) - len(native)) <= 1
    # positions come back in the device's own sample numbering (500 Hz)
    native_s = np.array([b.device_sample / 360.0 for b in native])
    resampled_s = np.array([b.device_sample / 500.0 for b in resampled])
    n = min(native_s.size, resampled_s.size)
    assert np.median(np.abs(native_s[:n] - resampled_s[:n])) < 0.01


def test_rr_features_of_a_premature_beat() -> None:
    config = BeatConfig(n_leads=1)
    extractor = BeatExtractor(config)
    fs = config.fs
    # beats every 1.0 s, then one 0.6 s early (premature), then a compensatory pause
    times = [1.0 * k for k in range(1, 13)] + [12.6, 14.0, 15.0, 16.0]
    peaks = [round(t * fs) for t in times]
    x = np.zeros(round(17 * fs))
    for p in peaks:
        x[p] = 1.0
    released = extractor.push(x, peaks)
    premature = next(b for b in released if b.sample == peaks[12])
    names = feature_names(config.feature_set, config.n_leads)
    rr = dict(zip(names, premature.rr.tolist(), strict=True))
    assert rr["pre_rr_s"] == pytest.approx(0.6, abs=1e-3)
    assert rr["post_rr_s"] == pytest.approx(1.4, abs=1e-3)
    assert rr["pre_over_local"] < 0.7  # premature relative to this patient's own rhythm
    assert rr["pre_over_post"] == pytest.approx(0.6 / 1.4, rel=1e-3)
    # against the median of the intervals before it, not an average the beat itself moves
    assert rr["log_pre_over_ref"] == pytest.approx(np.log(0.6), abs=1e-3)
    assert rr["log_post_over_ref"] == pytest.approx(np.log(1.4), abs=1e-3)
    assert rr["log_pre_over_previous"] == pytest.approx(np.log(0.6), abs=1e-3)
    assert rr["rr_irregularity"] == pytest.approx(0.0, abs=1e-6)  # one ectopic beat: regular
    regular = dict(zip(names, next(b for b in released if b.sample == peaks[8]).rr, strict=True))
    assert regular["pre_over_local"] == pytest.approx(1.0, abs=1e-3)
    assert regular["log_pre_over_ref"] == pytest.approx(0.0, abs=1e-3)
    assert regular["dominant_correlation_lead1"] == pytest.approx(1.0, abs=1e-3)


def test_a_beat_waits_for_the_next_beat_and_its_window() -> None:
    extractor = BeatExtractor(BeatConfig(n_leads=1))
    x = np.zeros(1000)
    assert extractor.push(x, [400]) == []  # no next beat yet
    released = extractor.push(np.zeros(10), [700])
    assert [b.sample for b in released] == [400]
    assert released[0].window.shape == (2, 256)  # beat, beat minus the typical beat
    assert released[0].window.dtype == np.float32
    assert [b.sample for b in extractor.flush([])] == [700]


def test_preprocess_config_round_trips_through_a_dict() -> None:
    config = PreprocessConfig()
    assert PreprocessConfig.from_dict(config.to_dict()) == config


def test_an_artifact_from_before_feature_sets_keeps_its_preprocessing() -> None:
    data = PreprocessConfig().to_dict()
    for key in ("feature_set", "n_leads", "reference_beats", "clusters"):
        del data["beat"][key]
    old = PreprocessConfig.from_dict(data).beat
    assert (old.feature_set, old.n_leads, old.n_features) == (1, 1, len(RR_FEATURES))


def _record_stream(x: np.ndarray, chunk: int) -> list[DetectedBeat]:
    stream = PatientStream(360.0)
    beats: list[DetectedBeat] = []
    for begin in range(0, x.shape[1], chunk):
        beats += stream.push(x[:, begin : begin + chunk])
    return beats + stream.flush()


@pytest.mark.parametrize("record", ["119", "201"])
def test_patient_relative_features_of_two_leads_do_not_depend_on_chunking(
    mitdb_dir: Path, record: str
) -> None:
    """119: ventricular bigeminy (clusters split in two); 201: AF (irregularity)."""
    loaded = load_record(mitdb_dir, record)
    x = np.stack([loaded.lead(name) for name in loaded.lead_names])[:, : 360 * 150]
    whole = _record_stream(x, x.shape[1])
    assert whole[0].features.rr.shape == (BeatConfig().n_features,)
    assert whole[0].features.window.shape == (4, 256)
    rng = np.random.default_rng(7)
    for chunk in (1 + int(rng.integers(0, 50)), 360, 4321):
        assert _same(_record_stream(x, chunk), whole)


def test_the_dominant_beat_of_a_bigeminy_is_the_normal_beat(mitdb_dir: Path) -> None:
    """In 119's bigeminy half the beats are V: a median of the last beats mixes the two shapes,
    the dominant cluster stays the patient's normal beat, so V beats stand out against it."""
    from ecgstream.dataset import record_beats

    beats = record_beats(mitdb_dir, "119", PreprocessConfig())
    names = feature_names(2, 2)
    distance = beats.rr[:, names.index("dominant_distance_lead1")]
    share = beats.rr[:, names.index("cluster_share")]
    n, v = beats.labels == "N", beats.labels == "V"
    assert np.median(distance[v]) > 5 * np.median(distance[n])
    assert np.median(share[n]) > np.median(share[v])
    assert np.median(share[n]) > 0.5


def test_irregularity_marks_atrial_fibrillation(mitdb_dir: Path) -> None:
    """201 and 203 hold AF episodes; 209's supraventricular beats come in a regular rhythm."""
    from ecgstream.dataset import record_beats

    index = feature_names(2, 2).index("rr_irregularity")
    af = record_beats(mitdb_dir, "203", PreprocessConfig())
    sinus = record_beats(mitdb_dir, "209", PreprocessConfig())
    assert np.mean(af.rr[af.labels == "N", index] > 0.2) > 0.7
    assert np.mean(sinus.rr[sinus.labels == "S", index] > 0.2) < 0.05


def _one_lead_morphology(beat: np.ndarray, dominant: np.ndarray, scale: float) -> list[float]:
    """MORPHOLOGY_FEATURES of one lead, written plainly: the definition `_morphology` must keep."""
    c = BeatConfig()
    x, d = beat[c.qrs], dominant[c.qrs]
    xc, dc = x - x.mean(), d - d.mean()
    norm = float(np.sqrt((xc @ xc) * (dc @ dc)))

    def width(v: np.ndarray) -> float:
        centred = np.abs(v - np.median(v))
        return max(1.0, float(np.count_nonzero(centred > 0.25 * centred.max())))

    def rms(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean(v**2)))

    p, t = slice(0, max(1, c.before - 29)), slice(c.before + 54, c.window)
    return [
        float(xc @ dc) / norm if norm > 1e-12 else 0.0,
        min(rms(x - d) / scale, 5.0),
        float(np.log(max(float(np.ptp(x)), 1e-3) / max(float(np.ptp(d)), 1e-3))),
        float(np.log(width(x) / width(d))),
        float(
            np.log(
                max(float(np.abs(np.diff(x)).max()), 1e-4)
                / max(float(np.abs(np.diff(d)).max()), 1e-4)
            )
        ),
        float(np.log(max(float(np.abs(xc).sum()), 1e-3) / max(float(np.abs(dc).sum()), 1e-3))),
        (int(np.argmax(np.abs(xc))) - int(np.argmax(np.abs(dc)))) / c.fs,
        min(rms(beat[p] - dominant[p]) / scale, 5.0),
        min(rms(beat[t] - dominant[t]) / scale, 5.0),
    ]


def test_morphology_of_all_leads_at_once_equals_one_lead_at_a_time(mitdb_dir: Path) -> None:
    """The vectorised features are bit for bit the per-lead definition (the model was trained
    on them), on real beats and templates of a record with many ectopic beats."""
    from ecgstream.beats import _morphology

    record = load_record(mitdb_dir, "208")
    leads = np.stack([record.lead("MLII"), record.lead("V1")]).astype(np.float64)  # as cut
    rng = np.random.default_rng(7)
    c = BeatConfig()
    for _ in range(300):
        a, b = rng.integers(0, leads.shape[1] - c.window, size=2)
        beat, dominant = leads[:, a : a + c.window], leads[:, b : b + c.window]
        scale = np.maximum(dominant.max(axis=1) - dominant.min(axis=1), c.min_scale_mv)
        expected = [_one_lead_morphology(beat[i], dominant[i], float(scale[i])) for i in (0, 1)]
        got = _morphology(beat, dominant, scale, c)
        assert np.array_equal(got, np.array(expected, dtype=np.float32))
