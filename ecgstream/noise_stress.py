"""EC57 noise stress records: a clean record plus calibrated noise, written as WFDB records.

The method of WFDB's `nst` (Moody, Muldrow & Mark 1984), as EC57 uses it:
- the signal's "power" S is the squared peak-to-peak QRS amplitude, S = A^2, with A the median
  peak-to-peak amplitude within 60 ms of the reference beats;
- the noise's power N is its mean square, mean removed;
- noise scaled so that 10 log10(S / N) is the chosen SNR is added to each lead, in alternating
  2-minute segments from minute 5 (the first 5 minutes stay clean, as in 118e24 ... 118e00).

Checked against PhysioNet's own 118e24/12/06/00 (`tests/unit/ecgstream/test_noise_stress.py`): their
noise (each record minus 118) measured this way gives back 24.8/12.5/6.6/0.6 dB on V1. MLII
comes out 4.5 dB lower, because `nst` scaled both leads' noise by one gain. Here each lead gets
its own: a record made at 6 dB is at 6 dB on both leads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from ecgstream.records import EcgRecord, load_record, load_reference_beats
from ecgstream.signal.units import adc_to_millivolts

CLEAN_S = 300.0  # the first 5 minutes stay clean
SEGMENT_S = 120.0  # then noise and clean alternate every 2 minutes
QRS_HALF_WIDTH_S = 0.06


@dataclass(frozen=True)
class NoiseStressRecord:
    name: str
    snr_db: float
    noise: str


def record_name(clean: str, noise: str, snr_db: float) -> str:
    """nstdb's names: 118e24, 118e_6 (a minus sign is written _)."""
    value = round(snr_db)
    return f"{clean}{noise}{value:02d}" if value >= 0 else f"{clean}{noise}_{abs(value)}"


def noise_mask(n_samples: int, fs: float) -> np.ndarray:
    t = np.arange(n_samples) / fs
    after = t - CLEAN_S
    return (after >= 0) & ((after // SEGMENT_S) % 2 == 0)


def qrs_amplitude(x_mv: np.ndarray, beats: np.ndarray, fs: float) -> float:
    """Median peak-to-peak amplitude in a window around each reference beat (mV)."""
    half = round(QRS_HALF_WIDTH_S * fs)
    amplitudes = [
        float(np.ptp(x_mv[max(0, b - half) : b + half + 1]))
        for b in beats
        if half <= b < x_mv.size - half
    ]
    if not amplitudes:
        raise ValueError("no reference beats to measure the QRS amplitude")
    return float(np.median(amplitudes))


def snr_db(x_mv: np.ndarray, noise_mv: np.ndarray, beats: np.ndarray, fs: float) -> float:
    signal_power = qrs_amplitude(x_mv, beats, fs) ** 2
    noise_power = float(np.mean((noise_mv - noise_mv.mean()) ** 2))
    return 10.0 * np.log10(signal_power / noise_power)


def millivolts(record: EcgRecord) -> np.ndarray:
    """All leads in millivolts, by the project's one conversion (float64 for the arithmetic)."""
    return adc_to_millivolts(record.digital, record.adc_gain, record.adc_baseline).astype(
        np.float64
    )


def add_noise(record: EcgRecord, noise: EcgRecord, beats: np.ndarray, snr: float) -> EcgRecord:
    """`record` with `noise` (same sampling rate) at `snr` dB on each lead, EC57 segments."""
    if noise.fs != record.fs:
        raise ValueError(f"noise at {noise.fs} Hz, record at {record.fs} Hz")
    clean = millivolts(record)
    raw_noise = millivolts(noise)
    n = record.n_samples
    if raw_noise.shape[1] < n:
        raw_noise = np.tile(raw_noise, (1, -(-n // raw_noise.shape[1])))
    mask = noise_mask(n, record.fs)
    noisy = clean.copy()
    for lead in range(clean.shape[0]):
        source = raw_noise[lead % raw_noise.shape[0], :n]
        source = source - source.mean()
        signal_power = qrs_amplitude(clean[lead], beats, record.fs) ** 2
        scale = np.sqrt(signal_power / 10 ** (snr / 10.0) / np.mean(source**2))
        noisy[lead, mask] += scale * source[mask]
    gain = np.asarray(record.adc_gain)[:, None]
    base = np.asarray(record.adc_baseline)[:, None]
    digital = np.clip(np.round(noisy * gain + base), -32768, 32767).astype(np.int16)
    return replace(record, digital=digital)


def write_noise_stress(
    data_dir: Path,
    clean: str,
    noise_dir: Path,
    noise: str,
    snrs: list[float],
    out: Path,
) -> list[NoiseStressRecord]:
    """Write `<clean><noise><snr>` records (signal, header, the clean record's annotations)."""
    record = load_record(data_dir, clean)
    noise_record = load_record(noise_dir, noise)
    beats = load_reference_beats(data_dir, clean).samples
    annotation = wfdb.rdann(str(data_dir / clean), "atr")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for snr in snrs:
        name = record_name(clean, noise, snr)
        noisy = add_noise(record, noise_record, beats, snr)
        wfdb.wrsamp(
            name,
            fs=record.fs,
            units=["mV"] * len(record.lead_names),
            sig_name=list(record.lead_names),
            d_signal=noisy.digital.T.astype(np.int64),
            fmt=["16"] * len(record.lead_names),
            adc_gain=list(record.adc_gain),
            baseline=list(record.adc_baseline),
            comments=[f"{clean} + {noise} noise at {snr:g} dB (EC57 method, ecgstream)"],
            write_dir=str(out),
        )
        wfdb.wrann(
            name,
            "atr",
            annotation.sample,
            symbol=annotation.symbol,
            subtype=annotation.subtype,
            chan=annotation.chan,
            num=annotation.num,
            aux_note=annotation.aux_note,
            fs=record.fs,
            write_dir=str(out),
        )
        written.append(NoiseStressRecord(name, snr, noise))
    return written


LETHAL = ("asystole", "vfib", "vtach")


def noise_row(results: list[Any], noise: str, snr: float | None) -> dict[str, Any]:
    """QRS Se/+P and false alarms of records at one noise level (EC57's per-SNR line)."""
    from ecgstream.ec57 import qrs_metrics
    from ecgstream.rhythm.scoring import alarms_report

    qrs = qrs_metrics(r.score for r in results)
    alarms = alarms_report(r.alarm_score for r in results)
    false = {
        kind: alarms["kinds"][kind]["alarms"] - alarms["kinds"][kind]["true_alarms"]
        for kind in alarms["kinds"]
    }
    hours = alarms["patient_hours"]
    lethal = sum(false[k] for k in LETHAL)
    return {
        "noise": noise,
        "snr_db": snr,
        "records": [r.score.record for r in results],
        "qrs": {"se": round(qrs.se, 5), "ppv": round(qrs.ppv, 5)},
        "patient_hours": hours,
        "false_lethal_alarms": lethal,
        "false_lethal_alarms_per_hour": round(lethal / hours, 3) if hours else None,
        "false_alarms": {k: v for k, v in false.items() if v},
        # the signal-quality inhibition: the share of the time judged unanalysable, and the
        # arrhythmia alarms held back there (they are in neither count above)
        "unanalysable_share": round(alarms["technical"]["unanalysable_s"] / (hours * 3600), 4)
        if hours
        else None,
        "inhibited_alarms": alarms["technical"]["inhibited_alarms"],
    }
