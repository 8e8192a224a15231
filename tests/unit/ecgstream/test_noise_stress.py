"""EC57 noise stress records: the SNR definition checked against PhysioNet's own nstdb records,
and records made here read back at the SNR asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgstream.noise_stress import millivolts, noise_mask, record_name, snr_db, write_noise_stress
from ecgstream.records import load_record, load_reference_beats


@pytest.mark.parametrize("nominal", [24, 12, 6, 0])
def test_the_snr_of_physionets_own_records_comes_back(
    mitdb_dir: Path, nstdb: Path, nominal: int
) -> None:
    clean = load_record(mitdb_dir, "118")
    noisy = load_record(nstdb, f"118e{nominal:02d}")
    beats = load_reference_beats(mitdb_dir, "118").samples
    mask = noise_mask(clean.n_samples, clean.fs)
    # nst wrote its records with a different ADC baseline (1024 counts): compare digital values
    added = (noisy.digital.astype(np.float64) + 1024 - clean.digital) / 200.0
    v1 = clean.lead_names.index("V1")
    measured = snr_db(millivolts(clean)[v1], added[v1][mask], beats, clean.fs)
    assert measured == pytest.approx(nominal, abs=1.0)
    # outside the noise segments nst left the signal as it was, up to an offset per segment
    edges = np.flatnonzero(np.diff(mask.astype(int))) + 1
    for begin, end in zip([0, *edges], [*edges, mask.size], strict=True):
        if not mask[begin]:
            assert added[:, begin:end].std(axis=1).max() <= 0.01, begin / 360


def test_records_made_here_have_the_asked_snr_on_each_lead(
    mitdb_dir: Path, nstdb: Path, tmp_path: Path
) -> None:
    made = write_noise_stress(mitdb_dir, "119", nstdb, "ma", [6, -6], tmp_path)
    assert (
        [m.name for m in made]
        == ["119ma06", "119ma_6"]
        == [
            record_name("119", "ma", 6),
            record_name("119", "ma", -6),
        ]
    )
    clean = load_record(mitdb_dir, "119")
    beats = load_reference_beats(mitdb_dir, "119").samples
    mask = noise_mask(clean.n_samples, clean.fs)
    for item in made:
        noisy = load_record(tmp_path, item.name)
        added = millivolts(noisy) - millivolts(clean)
        assert np.abs(added[:, ~mask]).max() == 0.0
        for lead in range(2):
            measured = snr_db(millivolts(clean)[lead], added[lead][mask], beats, clean.fs)
            assert measured == pytest.approx(item.snr_db, abs=0.2)
        reference = load_reference_beats(tmp_path, item.name)
        assert np.array_equal(reference.samples, beats)
