"""What lies behind a run's numbers: the validation images it got wrong (and right), the data report, and
the thumbnails of both, written once for `modelbuilder runs errors`, `Run.errors()` and
`GET /api/v1/runs/{id}/errors` (and the portal's galleries).

A thumbnail is named by the run's id, a gallery (`predictions` or `suspects`) and an index, never by a
path: the member of the run's thumbnails.zip is built here from those, and the zip itself is found
through the artifact store.
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

from modelbuilder import names
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, InvalidInput, NotFound, step
from modelbuilder.results.files import DATA_REPORT_FILE, PREDICTIONS_FILE, THUMBNAILS_FILE
from modelbuilder.sdk.results import evaluation, require_results
from modelbuilder.training.predictions import KINDS, Prediction, about, read_predictions, thumbnail_name


def predictions(services: Services, run: e.Run) -> list[Prediction]:
    """Every validation image of a finished run with its prediction, in validation order (the index)."""
    folder = require_results(services, run)
    if not (folder / PREDICTIONS_FILE).is_file():
        raise NotFound(f"Run {run.id} has no {PREDICTIONS_FILE}: it was trained before predictions were kept.",
                       "train it again to see the images behind its numbers.")
    return read_predictions(folder / PREDICTIONS_FILE)


def _check_label(value: str | None, labels: list[str], what: str, run: e.Run) -> None:
    if value is not None and value not in labels:
        raise InvalidInput(f"Run {run.id} has no label {value!r} (given as {what}).",
                           f"use one of: {', '.join(labels)[:300]}.")


def errors(services: Services, run: e.Run, *, label: str | None = None, true: str | None = None,
           predicted: str | None = None, include_correct: bool = False, limit: int | None = None,
           ) -> list[Prediction]:
    """The validation images the run got wrong, the most confidently wrong first; with `include_correct`,
    then the right ones, the least sure first.

    `true` / `predicted` keep the images of that true / predicted label (both: one confusion-matrix
    cell); `label` keeps those whose true or predicted label it is. A multi-label run's image is wrong
    when its predicted labels are not its true ones; with `label`, when that label is (missed, or a false
    alarm), each row then scored by that label's margin from its threshold (`predictions.about`).
    """
    if limit is not None:
        names.positive_int(limit, "limit", maximum=1_000_000)
    rows = predictions(services, run)
    labels = sorted({name for r in rows for name in (*r.true_labels, *r.predicted_labels)}
                    | set(_labels(services, run)))
    for value, what in ((label, "label"), (true, "true"), (predicted, "predicted")):
        _check_label(value, labels, what, run)
    if label is not None and any(r.multilabel for r in rows):
        thresholds = evaluation(services, run)["thresholds"]  # as exported, as the rows were predicted
        rows = [about(r, label, thresholds) for r in rows]
    chosen = [r for r in rows if (include_correct or not r.correct)
              and (true is None or true in r.true_labels) and (predicted is None or predicted in r.predicted_labels)
              and (label is None or label in (*r.true_labels, *r.predicted_labels))]
    chosen.sort(key=lambda r: (r.correct, -r.score if not r.correct else r.score, r.index))
    return chosen[:limit] if limit is not None else chosen


def _labels(services: Services, run: e.Run) -> list[str]:
    report = services.artifacts.run_dir(run.id) / DATA_REPORT_FILE
    return list(json.loads(report.read_text()).get("labels", [])) if report.is_file() else []


def data_report(services: Services, run: e.Run) -> dict[str, Any]:
    """data_report.json: written at preparation (duplicates, balance), completed after training (likely
    wrong labels, overfitting). 409 before the run has read its data."""
    path = services.artifacts.run_dir(run.id) / DATA_REPORT_FILE
    if not path.is_file():
        raise Conflict(f"Run {run.id} has no data report yet ({run.status}).",
                       "wait until it has read its data ({follow}), then try again.",
                       {"follow": step("follow_run", run=run.id)})
    return dict(json.loads(path.read_text()))


def thumbnail(services: Services, run: e.Run, kind: str, index: int) -> bytes:
    """The JPEG thumbnail of image `index` of the gallery `kind` ('predictions': the validation images by
    their index in predictions.csv; 'suspects': the likely wrong labels by rank)."""
    if kind not in KINDS:
        raise InvalidInput(f"There is no gallery {kind!r}.", f"use one of: {', '.join(KINDS)}.")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidInput(f"Image index {index!r} is not valid.", "use a whole number from 0 on.")
    require_results(services, run)
    if not services.artifacts.exists(run.id, THUMBNAILS_FILE):
        raise NotFound(f"Run {run.id} has no thumbnails: it was trained before they were kept.",
                       "train it again to see the images behind its numbers.")
    with services.artifacts.open(run.id, THUMBNAILS_FILE) as handle, zipfile.ZipFile(handle) as archive:
        try:
            return archive.read(thumbnail_name(kind, index))
        except KeyError:
            count = sum(1 for name in archive.namelist() if name.startswith(f"{kind}/"))
            raise NotFound(f"Run {run.id} has no image {index} among its {count} {kind}.",
                           f"use an index from 0 to {count - 1}." if count else "there are none to show.") from None
