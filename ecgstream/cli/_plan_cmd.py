"""`ecgstream plan`: the deployment for a situation, sized from measured figures."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ecgstream.cli._common import console, reports_errors
from ecgstream.errors import ConfigurationError
from ecgstream.settings import load_settings

CHOICES = {
    "access": ("public", "internal"),
    "latency": ("realtime", "interactive", "batch"),
    "connectivity": ("always", "intermittent", "none"),
    "hardware": ("cpu", "gpu", "microcontroller"),
}


@reports_errors
def plan(
    patients: int = typer.Option(..., min=1, prompt="How many patients?"),
    access: str = typer.Option(
        ..., prompt="Who needs access (public / internal)?", help="public | internal"
    ),
    latency: str = typer.Option(
        ...,
        prompt="How fast must results come (realtime / interactive / batch)?",
        help="realtime: alarms within seconds, continuously; interactive: an answer per "
        "request; batch: minutes are fine",
    ),
    connectivity: str = typer.Option("always", help="always | intermittent | none"),
    hardware: str = typer.Option("cpu", help="cpu | gpu | microcontroller"),
    requests_per_patient_hour: float = typer.Option(
        6.0, min=0.01, help="REST: segments sent per patient per hour"
    ),
    cores_per_node: int = typer.Option(8, min=1, help="cores of one machine or pod"),
    evidence: list[Path] = typer.Option(
        [], help="directories of benchmark JSON, before docs/results (repeatable)"
    ),
    measure: bool = typer.Option(
        False, help="re-measure the offline figures (bandwidth, edge) on this machine first"
    ),
    measure_stack: bool = typer.Option(
        False,
        help="with --measure: also the API and the pipeline on the running local stack "
        "(`cluster up` first; about 15 minutes)",
    ),
    json_out: bool = typer.Option(False, "--json", help="print the plan as JSON"),
    guide: Path | None = typer.Option(
        None, help="also write the deployment guide (markdown) from the same figures"
    ),
) -> None:
    """Recommend REST, streaming or edge for a situation, with the reasons and the sizing
    (nodes, replicas, partitions, bandwidth, latency), each number traced to a benchmark."""
    from ecgstream.planning.figures import REPO_RESULTS, Evidence
    from ecgstream.planning.planner import Situation, recommend, render, to_json

    answers = {
        "access": access,
        "latency": latency,
        "connectivity": connectivity,
        "hardware": hardware,
    }
    for name, value in answers.items():
        if value not in CHOICES[name]:
            raise ConfigurationError(f"--{name} is one of {', '.join(CHOICES[name])}")
    directories = list(evidence)
    if measure:
        measured = load_settings().state_dir / "plan-evidence"
        from ecgstream.planning.measure import measure_here

        measure_here(measured, with_stack=measure_stack, on_step=console.print)
        directories.insert(0, measured)
    figures = Evidence([*directories, REPO_RESULTS])
    situation = Situation(
        patients,
        answers["access"],  # type: ignore[arg-type]
        answers["latency"],  # type: ignore[arg-type]
        answers["connectivity"],  # type: ignore[arg-type]
        answers["hardware"],  # type: ignore[arg-type]
        requests_per_patient_hour,
        cores_per_node,
    )
    result = recommend(situation, figures)
    if json_out:
        print(json.dumps({**to_json(result), "evidence": figures.source_map()}, indent=1))
    else:
        console.print(render(result), highlight=False, markup=False)
        console.print("\n  evidence:", highlight=False)
        for name, path in figures.source_map().items():
            console.print(f"    {name}: {path}", highlight=False, markup=False)
    if guide is not None:
        from ecgstream.planning.guide import render_guide

        guide.parent.mkdir(parents=True, exist_ok=True)
        guide.write_text(render_guide(figures))
        console.print(f"guide written to {guide}")
