"""`modelbuilder predict` and `modelbuilder demo-data`.

A client of a remote server (MODELBUILDER_SERVER_URL without MODELBUILDER_DB_URL) names a run or a registered
model of the server: its MLModel.zip is fetched once into this home, and the images are scored here.
"""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from modelbuilder.cli._common import WorkspaceOption, faces, out
from modelbuilder.cli.console import console, err_console
from modelbuilder.core.services import Services
from modelbuilder.demo_data import write_dataset
from modelbuilder.errors import InvalidInput
from modelbuilder.results.runtime import PredictionEngine
from modelbuilder.sdk import scoring
from modelbuilder.sdk.client import Client
from modelbuilder.sdk.explain import overlay_folder, write_overlays
from modelbuilder.sdk.models import MODEL_HELP, explain, load_engine


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def predict(
    model: Annotated[str, typer.Argument(help=f"The model: {MODEL_HELP}.")],
    images: Annotated[Path, typer.Argument(help="An image, a folder of images (searched recursively), or a "
                                           "manifest (.csv/.tsv with ImageSource, .jsonl with image_url).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write one row per image to this file "
                                                "(scores.csv or scores.jsonl), with a progress bar and the "
                                                "throughput, instead of printing them.", show_default=False)] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="How to print the predictions. json: a "
                                                        "list for a folder (even of one image), an object for "
                                                        "an image file.")] = OutputFormat.table,
    top: Annotated[int, typer.Option(help="Labels to show per image in the table.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Images the model runs at once.")] = scoring.BATCH_SIZE,
    workers: Annotated[int | None, typer.Option(help="Threads decoding images while the model runs "
                                                "(default: the usable cores, at most 8).", show_default=False)] = None,
    explain_dir: Annotated[Path | None, typer.Option(
        "--explain", help="Also write where the model finds the label in the image, as heatmaps over it (Grad-CAM "
        "and integrated gradients), into this folder: IMAGE.gradcam.png and IMAGE.integrated_gradients.png, of the "
        "image's size. Needs the run's PyTorch checkpoint: MODEL names a run (its id, a registered model, its "
        "MLModel.zip in the run's folder); IMAGE is one image.", show_default=False)] = None,
    label: Annotated[str | None, typer.Option(help="With --explain: the label to explain (default: the prediction).",
                                              show_default=False)] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Classify images with a trained model (needs only onnxruntime, numpy and Pillow; --explain also needs
    PyTorch and the run's checkpoint)."""
    if label is not None and explain_dir is None:
        raise InvalidInput("--label names the label --explain explains.", "add --explain FOLDER, or leave out --label.")
    if output is not None:
        scoring.check_output(output)
    with faces() as (s, client):
        explained = (_explain(s, model, images, explain_dir, label, workspace, client) if explain_dir is not None
                     else None)
        engine = load_engine(s, model, workspace, client)
    files = scoring.images_in(images)
    if output is not None:
        _score_to_file(engine, files, output, batch_size, workers)
        _say(explained)
        return
    rows = list(scoring.score(engine, files, batch_size=batch_size, workers=workers))
    single = scoring.one_image(images)
    if single and rows[0].problem is not None:
        raise rows[0].problem
    if output_format is OutputFormat.json:  # a folder: a list, however many images; an image file: its object
        entries = [_entry(engine, r) for r in rows]
        typer.echo(json.dumps(entries[0] if single else entries, indent=2))
    elif output_format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        found = ["predicted_labels"] if engine.multilabel else []  # as batch scoring writes them
        writer.writerow(["image", "prediction", *found, *engine.labels, "error"])
        for r in rows:
            scores = [f"{p:.6f}" for p in r.score] if r.score is not None else [""] * len(engine.labels)
            labels = [";".join(r.predicted_labels or [])] if found else []
            writer.writerow([str(r.image.path), r.prediction or "", *labels, *scores,
                             r.problem.reason if r.problem else ""])
        typer.echo(buffer.getvalue(), nl=False)
    else:
        table = Table("image", "prediction", "score", f"top {top}")
        for r in rows:
            if r.score is None:
                table.add_row(str(r.image.path), "[red]skipped[/]", "", r.problem.reason if r.problem else "")
                continue
            ranked = sorted(zip(engine.labels, r.score, strict=True), key=lambda kv: -kv[1])
            shown = ", ".join(r.predicted_labels) or "(none)" if r.predicted_labels is not None else r.prediction
            table.add_row(str(r.image.path), f"[bold]{shown}[/]", f"{ranked[0][1]:.4f}",
                          ", ".join(f"{label} {p:.3f}" for label, p in ranked[:top]))
        console.print(table)
    _say(explained)


def _explain(s: Services, model: str, image: Path, folder: Path, label: str | None, workspace: str | None,
             client: Client | None) -> str:
    """Write the overlays explaining `image` into `folder`; returns the line that says so."""
    overlay_folder(folder)
    if image.exists() and not scoring.one_image(image):
        raise InvalidInput(f"--explain explains one image; {str(image)!r} is a folder or a manifest.",
                           "give one image file, or leave out --explain.")
    explanation = explain(s, model, image, label=label, workspace=workspace, client=client)
    written = write_overlays(explanation, folder, image.stem)
    which = " (the prediction)" if explanation.label == explanation.prediction else ""
    return f"Explained {explanation.label!r}{which}: wrote {', '.join(str(path) for path in written)}."


def _say(note: str | None) -> None:
    """A note on stderr, so that JSON and CSV on stdout stay machine-readable."""
    if note is not None:
        err_console.print(escape(note), highlight=False)


def _entry(engine: PredictionEngine, row: scoring.Scored) -> dict:
    if row.score is None:
        return {"image": str(row.image.path), "prediction": None, "error": row.problem.reason if row.problem else ""}
    found = {"predicted_labels": row.predicted_labels} if row.predicted_labels is not None else {}
    return {"image": str(row.image.path), "prediction": row.prediction, **found,
            "score": dict(zip(engine.labels, row.score, strict=True))}


def _score_to_file(engine: PredictionEngine, files: list[scoring.Image], output: Path, batch_size: int,
                   workers: int | None) -> None:
    bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=err_console, transient=True)
    with bar:
        task = bar.add_task("scoring", total=len(files))
        summary = scoring.score_to_file(engine, files, output, batch_size=batch_size, workers=workers,
                                        on_progress=lambda done: bar.update(task, completed=done))
    unreadable = f", {summary.unreadable} unreadable (their rows say why)" if summary.unreadable else ""
    out(f"Scored {summary.images} images in {summary.seconds:.2f} s: {summary.images_per_s:.1f} images/s"
        f"{unreadable}. Wrote {summary.output}.")


def demo_data(
    dataset: Annotated[str, typer.Argument(help="Which data set: digits.")],
    target: Annotated[Path, typer.Argument(help="Folder to write the images into.")],
) -> None:
    """Write a demo image set (digits: scikit-learn's 1,797 handwritten digits, one folder per label)."""
    counts = write_dataset(dataset, target)
    typer.echo(f"Wrote {sum(counts.values())} images in {len(counts)} label folders to {target}.")


def register(app: typer.Typer) -> None:
    app.command()(predict)
    app.command("demo-data")(demo_data)
