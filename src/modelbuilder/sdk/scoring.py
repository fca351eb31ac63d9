"""Batch scoring: every image of a folder or a manifest through a model, into a CSV or JSON Lines file.

Images are decoded on a pool of threads (Pillow releases the GIL) while the model runs on the batch
before (onnxruntime releases it too), so decoding and inference overlap instead of taking turns.
An image that cannot be read gets a row with its reason; it never stops the others.

    `modelbuilder predict MODEL FOLDER_OR_MANIFEST --output scores.csv` and the SDK's `score_images`
    call `score_to_file`; `modelbuilder predict` without --output prints what `score` yields.

What is scored: one image file; a folder (every file under it, recursively, hidden ones left out); or a
manifest, read by training's reader (`training.manifest.read_rows`) with its columns, its refusal of URLs
and its file:// decoding, but by scoring's rules: a `.csv`/`.tsv` with an `ImageSource` column (and an
optional `Label`, or `Labels` for several), or a `.jsonl` with `image_url` (and an optional `label`) per
line, as Azure AutoML writes it. A line's labels, when it gives any, are carried to the output (several
joined by ';', as `predicted_labels` are) to compare with; a split is not read; a file that is missing or
does not decode is a row with its reason, like any other.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from modelbuilder import names
from modelbuilder.errors import DataError, InvalidInput
from modelbuilder.results.runtime import InvalidImageError, PredictionEngine, preprocess, usable_cores
from modelbuilder.training.manifest import MANIFEST_SUFFIXES, read_rows
from modelbuilder.training.samples import LABELS_JOINED

JSONL_SUFFIX = ".jsonl"
OUTPUT_SUFFIXES = (".csv", JSONL_SUFFIX)
BATCH_SIZE = 32


@dataclass(frozen=True)
class Image:
    """One image to score: its path, and its label when a manifest gives one (several joined by ';')."""

    path: Path
    label: str | None = None


@dataclass(frozen=True)
class Scored:
    image: Image
    prediction: str | None
    score: list[float] | None  # in the model's label order
    problem: InvalidImageError | None = None  # why the image could not be scored
    predicted_labels: list[str] | None = None  # a multi-label model's labels over their thresholds


@dataclass(frozen=True)
class ScoringSummary:
    output: Path
    images: int
    unreadable: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


# --- what to score ----------------------------------------------------------------------------------
def images_in(target: str | os.PathLike[str]) -> list[Image]:
    """The images of `target` (see the module's docstring), in a stable order."""
    path = Path(target).expanduser()
    if not path.exists():
        raise InvalidInput(f"{str(path)!r} does not exist.", "pass the path of an image, a folder of images "
                           "or a manifest.")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise InvalidInput(f"The folder {str(path)!r} holds no files.", "pass an image or a folder of images.")
        return [Image(p) for p in files]
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        return [Image(path)]
    images = [Image(row.path, LABELS_JOINED.join(row.labels) or None) for row in read_rows(path, to_score=True)]
    if not images:
        raise DataError(f"The manifest {str(path)!r} lists no images.", "add a line per image to score.")
    return images


def one_image(target: str | os.PathLike[str]) -> bool:
    """Whether `target` names a single image rather than a folder or a manifest of them."""
    path = Path(target).expanduser()
    return path.is_file() and path.suffix.lower() not in MANIFEST_SUFFIXES


# --- scoring ----------------------------------------------------------------------------------------
def score(engine: PredictionEngine, images: Iterable[Image], *, batch_size: int = BATCH_SIZE,
          workers: int | None = None) -> Iterator[Scored]:
    """Every image's prediction, in order. `workers` threads decode up to two batches ahead of the model."""
    names.positive_int(batch_size, "batch_size", maximum=4096)
    workers = names.positive_int(workers, "workers", maximum=256) if workers is not None else min(8, usable_cores())
    return _scored(engine, images, batch_size, workers)


def _scored(engine: PredictionEngine, images: Iterable[Image], batch_size: int, workers: int) -> Iterator[Scored]:
    spec = engine.preprocess

    def decode(image: Image) -> np.ndarray | InvalidImageError:
        try:
            return preprocess(image.path, spec)
        except InvalidImageError as exc:
            return exc

    todo = iter(images)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[Image, Future[Any]]] = deque(
            (image, pool.submit(decode, image)) for image in islice(todo, 2 * batch_size + workers))
        while pending:
            batch = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            pending.extend((image, pool.submit(decode, image)) for image in islice(todo, len(batch)))
            decoded = [(image, future.result()) for image, future in batch]
            arrays = [d for _, d in decoded if isinstance(d, np.ndarray)]
            probs = iter(engine.predict_proba(np.stack(arrays)) if arrays else [])
            for image, d in decoded:
                if isinstance(d, InvalidImageError):
                    yield Scored(image, None, None, d)
                else:
                    p = next(probs)
                    yield Scored(image, engine.labels[int(np.argmax(p))], p.tolist(),
                                 predicted_labels=engine.labels_found(p))


def check_output(output: str | os.PathLike[str]) -> Path:
    path = Path(output).expanduser()
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InvalidInput(f"Cannot write scores to {str(path)!r}: its name ends in neither .csv nor .jsonl.",
                           "name the output scores.csv or scores.jsonl.")
    if path.is_dir():
        raise InvalidInput(f"The output {str(path)!r} is a folder.", "give the path of a file to write.")
    return path


class _Writer:
    """Rows as CSV (image, label, prediction, a multi-label model's predicted_labels joined by ';', one column per
    label, error) or as JSON Lines."""

    def __init__(self, out: TextIO, jsonl: bool, labels: list[str], with_label: bool, multilabel: bool = False
                 ) -> None:
        self.out, self.jsonl, self.labels, self.with_label = out, jsonl, labels, with_label
        self.multilabel = multilabel
        if not jsonl:
            self.csv = csv.writer(out)
            self.csv.writerow(["image", *(["label"] if with_label else []), "prediction",
                               *(["predicted_labels"] if multilabel else []), *labels, "error"])

    def write(self, row: Scored) -> None:
        error = row.problem.reason if row.problem is not None else None
        if self.jsonl:
            entry: dict[str, Any] = {"image": str(row.image.path)}
            if self.with_label:
                entry["label"] = row.image.label
            entry["prediction"] = row.prediction
            if self.multilabel:
                entry["predicted_labels"] = row.predicted_labels
            if row.score is not None:
                entry["score"] = dict(zip(self.labels, row.score, strict=True))
            if error is not None:
                entry["error"] = error
            self.out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            return
        scores = [f"{p:.6f}" for p in row.score] if row.score is not None else [""] * len(self.labels)
        found = [";".join(row.predicted_labels or [])] if self.multilabel else []
        self.csv.writerow([str(row.image.path), *([row.image.label or ""] if self.with_label else []),
                           row.prediction or "", *found, *scores, error or ""])


def score_to_file(engine: PredictionEngine, images: list[Image], output: str | os.PathLike[str], *,
                  batch_size: int = BATCH_SIZE, workers: int | None = None,
                  on_progress: Callable[[int], None] | None = None) -> ScoringSummary:
    """Score `images` into `output` (.csv or .jsonl), one row per image in their order; `on_progress`
    hears the count done after each image. The file appears whole, or not at all."""
    path = check_output(output)
    rows = score(engine, images, batch_size=batch_size, workers=workers)  # checks its settings first
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    unreadable, started = 0, time.perf_counter()
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            writer = _Writer(out, path.suffix.lower() == JSONL_SUFFIX, engine.labels,
                             any(i.label is not None for i in images), engine.multilabel)
            for done, row in enumerate(rows, start=1):
                writer.write(row)
                unreadable += row.problem is not None
                if on_progress is not None:
                    on_progress(done)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return ScoringSummary(path, len(images), unreadable, time.perf_counter() - started)
