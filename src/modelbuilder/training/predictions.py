"""The images behind every number: each validation image's prediction (`predictions.csv`), and small
JPEGs of the images a user looks at (`thumbnails.zip`: the validation images and the label suspects).

A multi-label image has sets of labels, not one, and each label its own threshold: its row holds the sets
joined by LABELS_JOINED (in the run's label order, so equal sets are equal strings), every label's score
(`label_scores`), and a `score` that orders the wrong images as a multi-class run's do, the most confidently
wrong first: the margin (`margin`) of the label the row is about (`scored_label`). That label is, for a wrong
image, its most wrong one (the largest margin on the wrong side of its threshold); for a right image, its
closest call (the smallest margin); asked about one label (`about`), that label.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from modelbuilder.training.cache import DecodedCache
from modelbuilder.training.samples import LABELS_JOINED

COLUMNS = ("index", "path", "true_label", "predicted_label", "score", "true_score")
MULTILABEL_COLUMNS = (*COLUMNS, "scored_label", "label_scores")  # a multi-class file keeps COLUMNS alone
SCORE_JOINED = "="  # label_scores: each `label=score`, joined by LABELS_JOINED
THUMBNAIL_PX = 96
KINDS = ("predictions", "suspects")  # the galleries whose images thumbnails.zip holds


@dataclass(frozen=True)
class Prediction:
    """One validation image: its path relative to its data, true and predicted labels, the probability of
    the prediction (`score`) and of the true label (`true_score`).

    A multi-label image's (`scored_label` set): its labels' sets joined, `score` the margin of `scored_label`
    (see above), `true_score` that label's score, and every label's score in `label_scores`."""

    index: int
    path: str
    true_label: str
    predicted_label: str
    score: float
    true_score: float
    scored_label: str | None = None
    label_scores: dict[str, float] = field(default_factory=dict)

    @property
    def multilabel(self) -> bool:
        return self.scored_label is not None

    @property
    def true_labels(self) -> tuple[str, ...]:
        return _split(self.true_label) if self.multilabel else (self.true_label,)

    @property
    def predicted_labels(self) -> tuple[str, ...]:
        return _split(self.predicted_label) if self.multilabel else (self.predicted_label,)

    @property
    def correct(self) -> bool:
        """Right: the prediction (a multi-label image's: whether the label the row is about is predicted)
        is the truth. For a multi-label row as written, that is whether every label is right."""
        if self.multilabel:
            return (self.scored_label in self.true_labels) == (self.scored_label in self.predicted_labels)
        return self.true_label == self.predicted_label

    @property
    def mistake(self) -> str | None:
        """A multi-label row's wrong `scored_label`: 'missed' (true, not predicted) or 'false alarm'."""
        if not self.multilabel or self.correct:
            return None
        return "missed" if self.scored_label in self.true_labels else "false alarm"


def _split(joined: str) -> tuple[str, ...]:
    return tuple(joined.split(LABELS_JOINED)) if joined else ()


def margin(score: float, threshold: float) -> float:
    """How far a label's score lies from its threshold, on whichever side: how sure a multi-label model is
    of that label, rightly or wrongly."""
    return round(abs(float(score) - float(threshold)), 6)


def predictions_of(paths: Sequence[str], targets: np.ndarray, probs: np.ndarray, labels: Sequence[str]
                   ) -> list[Prediction]:
    predicted = probs.argmax(1)
    return [Prediction(i, paths[i], labels[int(targets[i])], labels[int(predicted[i])],
                       round(float(probs[i, predicted[i]]), 6), round(float(probs[i, targets[i]]), 6))
            for i in range(len(paths))]


def multilabel_predictions_of(paths: Sequence[str], targets: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                              thresholds: Sequence[float]) -> list[Prediction]:
    """Each image's row, about its most wrong label (a right image: its closest call). `thresholds`: the
    exported ones (metrics.json's, as the runtime applies them), so the rows predict what the model does."""
    cuts = np.asarray(thresholds, dtype=np.float64)
    truth, predicted = targets > 0.5, probs >= cuts
    rows = []
    for i in range(len(paths)):
        margins = np.abs(probs[i].astype(np.float64) - cuts)
        wrong = truth[i] != predicted[i]
        k = int(np.argmax(np.where(wrong, margins, -1.0))) if wrong.any() else int(np.argmin(margins))
        scores = {label: round(float(probs[i, j]), 6) for j, label in enumerate(labels)}
        rows.append(Prediction(i, paths[i], _joined(labels, truth[i]), _joined(labels, predicted[i]),
                               margin(probs[i, k], cuts[k]), scores[labels[k]], labels[k], scores))
    return rows


def _joined(labels: Sequence[str], chosen: np.ndarray) -> str:
    return LABELS_JOINED.join(label for label, on in zip(labels, chosen, strict=True) if on)


def about(row: Prediction, label: str, thresholds: dict[str, float]) -> Prediction:
    """A multi-label row re-scored for one label: `score` that label's margin, `correct` whether it is right."""
    return replace(row, scored_label=label, score=margin(row.label_scores[label], thresholds[label]),
                   true_score=row.label_scores[label])


def write_predictions(path: Path, rows: Sequence[Prediction]) -> None:
    multilabel = any(row.multilabel for row in rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(MULTILABEL_COLUMNS if multilabel else COLUMNS)
        for row in rows:
            cells = [row.index, row.path, row.true_label, row.predicted_label, row.score, row.true_score]
            if multilabel:
                cells += [row.scored_label, LABELS_JOINED.join(f"{label}{SCORE_JOINED}{score}"
                                                                for label, score in row.label_scores.items())]
            writer.writerow(cells)


def read_predictions(path: Path) -> list[Prediction]:
    """Either kind of predictions.csv: a multi-label one has `scored_label` and `label_scores` too."""
    with path.open(newline="", encoding="utf-8") as f:
        return [Prediction(int(r["index"]), r["path"], r["true_label"], r["predicted_label"], float(r["score"]),
                           float(r["true_score"]), r.get("scored_label"), _label_scores(r.get("label_scores")))
                for r in csv.DictReader(f)]


def _label_scores(joined: str | None) -> dict[str, float]:
    pairs = (item.rpartition(SCORE_JOINED) for item in _split(joined or ""))
    return {label: float(score) for label, _, score in pairs}


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
