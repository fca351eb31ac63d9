"""The images behind every number: each validation image's prediction (`predictions.csv`), and small
JPEGs of the images a user looks at (`thumbnails.zip`: the validation images and the label suspects).

Thumbnails are made at evaluation from the decoded cache and kept in the run's folder, so the portal
serves them through the artifact store by the run's id and an index, never from a path a client names,
and they outlive the data folder (which may be on another host). Torch-free: the application layer
reads these files.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from modelbuilder.training.cache import DecodedCache

COLUMNS = ("index", "path", "true_label", "predicted_label", "score", "true_score")
THUMBNAIL_PX = 96
KINDS = ("predictions", "suspects")  # the galleries whose images thumbnails.zip holds


@dataclass(frozen=True)
class Prediction:
    """One validation image: its path relative to its data, true and predicted labels, the probability of
    the prediction (`score`) and of the true label (`true_score`)."""

    index: int
    path: str
    true_label: str
    predicted_label: str
    score: float
    true_score: float

    @property
    def correct(self) -> bool:
        return self.true_label == self.predicted_label


def predictions_of(paths: Sequence[str], targets: np.ndarray, probs: np.ndarray, labels: Sequence[str]
                   ) -> list[Prediction]:
    predicted = probs.argmax(1)
    return [Prediction(i, paths[i], labels[int(targets[i])], labels[int(predicted[i])],
                       round(float(probs[i, predicted[i]]), 6), round(float(probs[i, targets[i]]), 6))
            for i in range(len(paths))]


def write_predictions(path: Path, rows: Sequence[Prediction]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row.index, row.path, row.true_label, row.predicted_label, row.score, row.true_score])


def read_predictions(path: Path) -> list[Prediction]:
    with path.open(newline="", encoding="utf-8") as f:
        return [Prediction(int(r["index"]), r["path"], r["true_label"], r["predicted_label"], float(r["score"]),
                           float(r["true_score"])) for r in csv.DictReader(f)]


def thumbnail_name(kind: str, index: int) -> str:
    """The member of thumbnails.zip holding image `index` of the gallery `kind` (one of KINDS)."""
    return f"{kind}/{int(index)}.jpg"


def write_thumbnails(path: Path, galleries: dict[str, Sequence[tuple[DecodedCache, int]]]) -> None:
    """One JPEG per image, `thumbnail_name(kind, i)` for the i-th (cache, record) of each gallery."""
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for kind, images in galleries.items():
            for i, (cache, record) in enumerate(images):
                picture = Image.fromarray(cache.read([record])[0])
                picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
                out = io.BytesIO()
                picture.save(out, "JPEG", quality=85)
                archive.writestr(thumbnail_name(kind, i), out.getvalue())
    tmp.replace(path)
