"""`ecgstream edge export`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ecgstream.cli._common import console, reports_errors

edge_app = typer.Typer(help="The edge deployment: bundles that run with onnxruntime only.")


@edge_app.command()
@reports_errors
def export(
    out: Path = typer.Option(..., help="directory of the new bundle"),
    model: Path | None = typer.Option(None, help="model artifact (default: the shipped model)"),
) -> None:
    """Export a model as an edge bundle: fp32 and int8 ONNX, preprocessing, checksum manifest."""
    from ecgstream.edge.export import export_bundle

    with console.status("exporting"):
        manifest = export_bundle(model, out)
    console.print_json(json.dumps(manifest))
