"""`ecgstream train | evaluate | crossval`: the ECG core from the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecgstream.cli._common import console, reports_errors
from ecgstream.settings import load_settings
from ecgstream.splits import DS1

if TYPE_CHECKING:  # torch is imported only by the commands that train
    from ecgstream.recipes import Recipe
    from ecgstream.training import TrainConfig

DEFAULT_RECORDS = list(DS1)
RECIPE_HELP = "training recipe (ecgstream/recipes.py; default: the shipped model's)"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _data_dir(data: Path | None) -> Path:
    return data if data is not None else load_settings().records_dir


@reports_errors
def train(
    out: Path = typer.Option(..., help="new artifact directory (must not exist yet)"),
    data: Path | None = typer.Option(None, help="WFDB records (default: the configured data)"),
    records: list[str] = typer.Option(DEFAULT_RECORDS, help="training patients (records)"),
    recipe: str | None = typer.Option(None, help=RECIPE_HELP),
    epochs: int | None = typer.Option(None, min=1, help="default: the recipe's"),
    seed: int = typer.Option(0),
    validation_fraction: float = typer.Option(0.25, min=0.05, max=0.5),
    class_weight_power: float | None = typer.Option(
        None, min=0.0, max=2.0, help="default: the recipe's"
    ),
    crossval_report: Path | None = typer.Option(
        None,
        "--crossval",
        help="`ecgstream crossval --json` output of the same recipe: its figures and intervals "
        "go into the model card",
    ),
) -> None:
    """Train one recipe, each network early-stopping on its own patient-wise validation split."""
    from ecgstream.trainer import train_and_save

    chosen = _recipe(recipe)
    config = _train_config(chosen, epochs, seed, class_weight_power)
    metrics = None if crossval_report is None else _crossval_metrics(crossval_report, chosen)
    with _progress() as progress:
        prep = progress.add_task("beats from records", total=len(records))
        fit = progress.add_task("epochs", total=config.epochs * (1 + config.model.feature_networks))

        def on_record(name: str) -> None:
            progress.update(prep, advance=1, description=f"beats from record {name}")

        def on_epoch(report: object) -> None:
            progress.update(
                fit,
                advance=1,
                description=f"epoch {report.epoch}: validation macro-F1 "  # type: ignore[attr-defined]
                f"{report.validation_macro_f1:.3f}",  # type: ignore[attr-defined]
            )

        outcome = train_and_save(
            _data_dir(data),
            records,
            out,
            config,
            validation_fraction=validation_fraction,
            preprocess=chosen.preprocess,
            on_record=on_record,
            on_epoch=on_epoch,
            recipe_name=chosen.name,
            metrics=metrics,
        )
    console.print(
        f"model [bold]{outcome.version}[/] written to {outcome.path} (best epoch "
        f"{outcome.best_epoch}, validation macro-F1 {outcome.validation_macro_f1:.3f})"
    )


def _report(results: list, title: str, json_out: Path | None, plots: Path | None) -> dict:
    from ecgstream.ec57 import confusion_table, ec57_table, evaluation_report, merge_confusion
    from ecgstream.rhythm.scoring import alarms_report, alarms_table

    scores = [r.score for r in results]
    report = evaluation_report(scores)
    report["alarms"] = alarms_report(r.alarm_score for r in results)
    console.print(ec57_table(scores, title))
    console.print(confusion_table(merge_confusion(s for s in scores if s.score_classes)))
    console.print(alarms_table(report["alarms"], f"Rhythm alarms, {title}"))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        console.print(f"EC57 report written to {json_out}")
    if plots is not None:
        _plots(results, plots)
    return report


def _plots(results: list, folder: Path) -> None:
    import numpy as np

    from ecgstream.ec57 import merge_confusion
    from ecgstream.plots import plot_confusion, plot_strip

    folder.mkdir(parents=True, exist_ok=True)
    plot_confusion(
        merge_confusion(r.score for r in results if r.score.score_classes),
        folder / "confusion.png",
        "EC57 confusion (gross, non-paced records)",
    )
    for r in results:
        # show the first disagreement after the unscored first 5 minutes, else minute 5
        start = 300.0
        scored = r.det_samples >= int(300 * r.fs)
        for sample, label in zip(r.det_samples[scored], r.det_labels[scored], strict=True):
            nearest = int(np.argmin(np.abs(r.ref_samples - sample))) if r.ref_samples.size else 0
            if r.ref_samples.size and r.ref_labels[nearest] != label:
                start = max(0.0, sample / r.fs - 5.0)
                break
        plot_strip(
            r.signal_mv,
            r.fs,
            folder / f"strip_{r.score.record}.png",
            title=f"record {r.score.record} ({r.lead}): predicted above, reference below",
            start_s=start,
            duration_s=20.0,
            ref_samples=r.ref_samples,
            ref_labels=r.ref_labels,
            det_samples=r.det_samples,
            det_labels=r.det_labels,
        )
    console.print(f"plots written to {folder}")


@reports_errors
def evaluate(
    records: list[str] = typer.Option(..., help="records to evaluate: --records R [R ...]"),
    model: Path | None = typer.Option(None, help="model artifact (default: the shipped model)"),
    data: Path | None = typer.Option(None, help="WFDB records (default: the configured data)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the EC57 report here"),
    plots: Path | None = typer.Option(None, help="write a confusion PNG and ECG strips here"),
) -> None:
    """Streaming detector + classifier on whole records, scored per ANSI/AAMI EC57."""
    from ecgstream.artifact import load_artifact
    from ecgstream.evaluation import evaluate_records

    artifact = load_artifact(model)
    with _progress() as progress:
        task = progress.add_task("records", total=len(records))
        results = evaluate_records(
            artifact,
            _data_dir(data),
            records,
            on_record=lambda r: progress.update(task, advance=1, description=r.score.record),
        )
    _report(results, f"EC57, model {artifact.version}", json_out, plots)


@reports_errors
def crossval(
    folds: int = typer.Option(5, min=2),
    records: list[str] = typer.Option(DEFAULT_RECORDS, help="patients to cross-validate over"),
    data: Path | None = typer.Option(None),
    recipe: str | None = typer.Option(None, help=RECIPE_HELP),
    epochs: int | None = typer.Option(None, min=1, help="default: the recipe's"),
    seed: int = typer.Option(0),
    class_weight_power: float | None = typer.Option(
        None, min=0.0, max=2.0, help="default: the recipe's"
    ),
    json_out: Path | None = typer.Option(None, "--json"),
    plots: Path | None = typer.Option(None),
) -> None:
    """Leave-patients-out cross-validation of a training recipe, scored per EC57, with each
    fold's figures and bootstrap intervals over patients."""
    from ecgstream.evidence import crossval_report, intervals_table
    from ecgstream.rhythm.scoring import alarms_report
    from ecgstream.trainer import cross_validate

    chosen = _recipe(recipe)
    config = _train_config(chosen, epochs, seed, class_weight_power)
    with _progress() as progress:
        task = progress.add_task("folds", total=folds)
        outcome = cross_validate(
            _data_dir(data),
            records,
            folds,
            config,
            preprocess=chosen.preprocess,
            on_fold=lambda fold, held: progress.update(
                task, completed=fold, description=f"fold {fold + 1}: held out {' '.join(held)}"
            ),
        )
        progress.update(task, completed=folds)
    _report(outcome.results, f"EC57, {folds}-fold leave-patients-out, {chosen.name}", None, plots)
    report = crossval_report([[r.score for r in fold] for fold in outcome.folds], outcome.notes)
    report["alarms"] = alarms_report(r.alarm_score for r in outcome.results)
    report["recipe"] = {"name": chosen.name, "summary": chosen.summary, "seed": seed}
    console.print(intervals_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        console.print(f"cross-validation report written to {json_out}")


def _crossval_metrics(path: Path, chosen: Recipe) -> dict:
    """The model card's `crossval` entry, from a crossval report of the recipe being trained."""
    report = json.loads(path.read_text())
    trained = report.get("recipe", {}).get("name")
    if trained != chosen.name:
        raise typer.BadParameter(
            f"{path} cross-validates recipe {trained!r}, not {chosen.name!r}",
            param_hint="--crossval",
        )
    return {
        "crossval": {
            "note": "EC57 gross figures of the recipe under leave-patients-out cross-validation "
            "(each record scored by a model that never saw its patient); intervals: 95 % "
            "bootstrap over patients",
            "recipe": report["recipe"],
            "folds": [fold["records"] for fold in report["folds"]],
            "qrs": report["qrs"],
            "classes": report["classes"],
            "macro_f1": report["macro_f1"],
            "intervals": report["intervals"],
            # per patient, so a release gate can compare another model with this one patient
            # by patient on the same folds (decision 99)
            "records": {
                name: {"confusion": entry["confusion"], "macro_f1": entry["macro_f1"]}
                for name, entry in report["records"].items()
            },
        }
    }


def _recipe(name: str | None) -> Recipe:
    from ecgstream.recipes import DEFAULT_RECIPE, recipe

    try:
        return recipe(name or DEFAULT_RECIPE)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--recipe") from None


def _train_config(
    chosen: Recipe, epochs: int | None, seed: int, class_weight_power: float | None
) -> TrainConfig:
    changes: dict[str, Any] = {"seed": seed}
    if epochs is not None:
        changes["epochs"] = epochs
    if class_weight_power is not None:
        changes["class_weight_power"] = class_weight_power
    return replace(chosen.train, **changes)


@reports_errors
def noise_test(
    records: list[str] = typer.Option(["118", "119"], help="clean records (EC57 uses 118 119)"),
    noise: list[str] = typer.Option(["ma", "bw"], help="noise records of the nstdb folder"),
    snr: list[float] = typer.Option([24, 18, 12, 6, 0, -6], help="signal-to-noise ratios, dB"),
    model: Path | None = typer.Option(None, help="model artifact (default: the shipped model)"),
    data: Path | None = typer.Option(None, help="clean records (default: the configured data)"),
    noise_dir: Path | None = typer.Option(None, help="nstdb folder (default: beside the data)"),
    json_out: Path | None = typer.Option(None, "--json"),
) -> None:
    """The EC57 noise stress test: nstdb's 118e24...118e00 and records made from clean ones with
    ma/bw noise at each SNR, through the streaming path: QRS Se/+P and false alarms per SNR."""
    import tempfile

    from ecgstream.artifact import load_artifact
    from ecgstream.cli._data_cmd import _noise_dirs
    from ecgstream.evaluation import evaluate_records
    from ecgstream.noise_stress import noise_row, write_noise_stress

    artifact = load_artifact(model)
    clean_dir, nstdb = _noise_dirs(_data_dir(data), noise_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecgstream-nst-") as tmp, _progress() as progress:
        made = [
            m
            for record in records
            for name in noise
            for m in write_noise_stress(clean_dir, record, nstdb, name, list(snr), Path(tmp))
        ]
        own = sorted(p.stem for p in nstdb.glob("118e*.hea"))
        task = progress.add_task("records", total=len(made) + len(own) + len(records))
        step = lambda r: progress.update(task, advance=1, description=r.score.record)  # noqa: E731
        rows.append(noise_row(evaluate_records(artifact, clean_dir, records, step), "none", None))
        for name in own:  # PhysioNet's own electrode-motion records
            results = evaluate_records(artifact, nstdb, [name], step)
            rows.append(noise_row(results, "em (nstdb)", float(name[4:].replace("_", "-"))))
        for name in noise:
            for level in snr:
                chosen = [m.name for m in made if m.noise == name and m.snr_db == level]
                rows.append(
                    noise_row(evaluate_records(artifact, Path(tmp), chosen, step), name, level)
                )
    table = Table(title=f"EC57 noise stress test, model {artifact.version}")
    for column in (
        "noise",
        "SNR dB",
        "QRS Se %",
        "QRS +P %",
        "false lethal alarms / h",
        "false alarms",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["noise"],
            "clean" if row["snr_db"] is None else f"{row['snr_db']:g}",
            f"{100 * row['qrs']['se']:.2f}",
            f"{100 * row['qrs']['ppv']:.2f}",
            f"{row['false_lethal_alarms_per_hour']:.2f}",
            ", ".join(f"{k} {v}" for k, v in row["false_alarms"].items()) or "-",
        )
    console.print(table)
    if json_out is not None:
        report = {
            "model_version": artifact.version,
            "clean_records": list(records),
            "what": "QRS Se/+P (EC57 matching) and false alarms per SNR; made records: EC57 "
            "method (noise in alternating 2-minute segments from minute 5, SNR = 10 log10 of "
            "squared QRS peak-to-peak amplitude over noise mean square, per lead)",
            "rows": rows,
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        console.print(f"noise stress report written to {json_out}")
