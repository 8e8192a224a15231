"""`ecgstream data download`: PhysioNet databases for users with internet access."""

from __future__ import annotations

from pathlib import Path

import typer

from ecgstream.cli._common import console, reports_errors
from ecgstream.errors import EcgstreamError

data_app = typer.Typer(help="ECG data sets.")


class DownloadError(EcgstreamError):
    pass


@data_app.command()
@reports_errors
def download(
    database: str = typer.Option("mitdb", help="PhysioNet database name"),
    out: Path | None = typer.Option(None, help="target folder (default: the data cache)"),
    records: list[str] | None = typer.Option(None, help="only these records"),
    base_url: str | None = typer.Option(None, help="PhysioNet mirror (default: PhysioNet)"),
) -> None:
    """Download a PhysioNet database (WFDB format) with wfdb's downloader."""
    import wfdb
    from wfdb.io import download as wfdb_download

    from ecgstream.settings import DEFAULT_DOWNLOAD_DIR

    target = out or DEFAULT_DOWNLOAD_DIR / database
    target.mkdir(parents=True, exist_ok=True)
    if base_url:
        wfdb_download.set_db_index_url(base_url)
    console.print(f"downloading {database} into {target} ...")
    try:
        wfdb.dl_database(database, str(target), records=records or "all")
    except Exception as exc:
        raise DownloadError(
            f"could not download '{database}' from PhysioNet ({type(exc).__name__}: {exc}). "
            f"Without internet access, copy the WFDB files (.hea, .dat, .atr) into {target} "
            "or point ECGSTREAM_DATA_DIR at a folder that has them."
        ) from None
    console.print(f"[green]done[/]: {len(list(target.glob('*.hea')))} records in {target}")


@data_app.command("noise-stress")
@reports_errors
def noise_stress(
    records: list[str] = typer.Option(["118", "119"], help="clean records (EC57 uses 118 119)"),
    noise: list[str] = typer.Option(["ma", "bw"], help="noise records of the nstdb folder"),
    snr: list[float] = typer.Option([24, 18, 12, 6, 0, -6], help="signal-to-noise ratios, dB"),
    out: Path = typer.Option(..., help="folder for the new WFDB records"),
    data: Path | None = typer.Option(None, help="clean records (default: the configured data)"),
    noise_dir: Path | None = typer.Option(None, help="nstdb folder (default: beside the data)"),
) -> None:
    """Make EC57 noise stress records (clean record + calibrated noise, WFDB) for `evaluate`."""
    from ecgstream.noise_stress import write_noise_stress

    clean_dir, nstdb = _noise_dirs(data, noise_dir)
    for record in records:
        for name in noise:
            made = write_noise_stress(clean_dir, record, nstdb, name, list(snr), out)
            console.print(f"{record} + {name}: {' '.join(m.name for m in made)}")
    console.print(
        f"[green]done[/]: records in {out}; score them with `ecgstream evaluate "
        f"--data {out} --records ...`"
    )


def _noise_dirs(data: Path | None, noise_dir: Path | None) -> tuple[Path, Path]:
    from ecgstream.settings import load_settings

    clean_dir = data or load_settings().records_dir
    nstdb = noise_dir or clean_dir.parent / "nstdb"
    if not (nstdb / "ma.hea").exists() and not (nstdb / "bw.hea").exists():
        raise typer.BadParameter(
            f"no noise records (ma, bw) in {nstdb}: `ecgstream data download --database nstdb`",
            param_hint="--noise-dir",
        )
    return clean_dir, nstdb
