"""`ecgstream data download`: PhysioNet databases for users with internet access."""

from __future__ import annotations

from pathlib import Path

import typer

from ecgstream.cli.app import console, reports_errors
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
