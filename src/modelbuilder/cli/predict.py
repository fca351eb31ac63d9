"""`modelbuilder predict` and `modelbuilder demo-data`."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelbuilder.cli.console import console
from modelbuilder.demo_data import write_dataset
from modelbuilder.errors import InvalidInput
from modelbuilder.results.runtime import InvalidImageError, PredictionEngine


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _images_in(target: Path) -> list[Path]:
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InvalidInput(f"The folder {str(target)!r} holds no files.", "pass an image or a folder of images.")
        return files
    if not target.exists():
        raise InvalidInput(f"{str(target)!r} does not exist.", "pass the path of an image or a folder of images.")
    return [target]


def predict(
    model: Annotated[Path, typer.Argument(help="MLModel.zip (or a folder holding its three files).")],
    images: Annotated[Path, typer.Argument(help="An image, or a folder of images (searched recursively).")],
    output_format: Annotated[OutputFormat, typer.Option("--format", help="How to print the predictions. json: a "
                                                        "list for a folder (even of one image), an object for "
                                                        "an image file.")] = OutputFormat.table,
    top: Annotated[int, typer.Option(help="Labels to show per image in the table.")] = 3,
) -> None:
    """Classify images with a trained model (needs only onnxruntime, numpy and Pillow)."""
    engine = PredictionEngine.load(model)
    files = _images_in(images)
    rows: list[dict] = []
    for path in files:
        try:
            out = engine.predict(str(path))
            rows.append({"image": str(path), "prediction": out.prediction,
                         "score": dict(zip(engine.labels, out.score, strict=True))})
        except InvalidImageError as exc:
            if len(files) == 1:
                raise
            rows.append({"image": str(path), "prediction": None, "error": exc.reason})
    if output_format is OutputFormat.json:  # a folder: a list, however many images; an image file: its object
        typer.echo(json.dumps(rows if images.is_dir() else rows[0], indent=2))
    elif output_format is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", "prediction", *engine.labels, "error"])
        for r in rows:
            scores = [f"{r['score'][label]:.6f}" for label in engine.labels] if "score" in r else [""] * len(
                engine.labels)
            writer.writerow([r["image"], r["prediction"] or "", *scores, r.get("error", "")])
        typer.echo(buffer.getvalue(), nl=False)
    else:


        table = Table("image", "prediction", "score", f"top {top}")
        for r in rows:
            if r["prediction"] is None:
                table.add_row(r["image"], "[red]skipped[/]", "", r["error"])
                continue
            ranked = sorted(r["score"].items(), key=lambda kv: -kv[1])
            table.add_row(r["image"], f"[bold]{r['prediction']}[/]", f"{ranked[0][1]:.4f}",
                          ", ".join(f"{label} {p:.3f}" for label, p in ranked[:top]))
        console.print(table)


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
