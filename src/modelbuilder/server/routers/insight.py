"""`/api/v1/runs/{run_id}/errors`, `/data-report` and `/thumbnails/{kind}/{index}`: the images behind a
run's numbers and its data report (`sdk.insight`, as `modelbuilder runs errors` and `Run.errors()`).

A thumbnail is asked for by gallery and index, never by path: the file it comes from is the run's
thumbnails.zip, found through the artifact store.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from modelbuilder.sdk import insight
from modelbuilder.server.deps import RunDep, ServicesDep
from modelbuilder.server.schemas import ValidationImagePublic

router = APIRouter(prefix="/runs/{run_id}", tags=["insight"])
Label = Annotated[str | None, Query(min_length=1, max_length=200)]
_JPEG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."}}


@router.get("/errors")
def list_errors(
    run: RunDep,
    services: ServicesDep,
    label: Label = None,
    true: Label = None,
    predicted: Label = None,
    include_correct: Annotated[bool, Query(alias="all", description="Also the images it got right.")] = False,
    limit: Annotated[int | None, Query(description="At most this many.")] = None,
) -> list[ValidationImagePublic]:
    """The validation images the run got wrong, the most confidently wrong first (with `all`, then the right
    ones, the least sure first); `true` and `predicted` select a confusion-matrix cell, `label` a row and
    column (multi-label: the images where that label is missed or falsely found, by its margin from its
    threshold). 409 until the run has results."""
    rows = insight.errors(services, run, label=label, true=true, predicted=predicted,
                          include_correct=include_correct, limit=limit)
    return [ValidationImagePublic.of(row) for row in rows]


@router.get("/data-report")
def get_data_report(run: RunDep, services: ServicesDep) -> dict[str, Any]:
    """data_report.json: skipped files, label balance, duplicates (within a label, across labels, across the
    split), likely wrong labels and overfitting, with one summary line each. 409 before the data is read."""
    return insight.data_report(services, run)


@router.get("/thumbnails/{kind}/{index}", response_class=Response, responses=_JPEG)
def get_thumbnail(
    run: RunDep,
    services: ServicesDep,
    kind: Annotated[str, Path(max_length=40, description="predictions (validation images, by their index in "
                                                         "errors) or suspects (likely wrong labels, by rank).")],
    index: Annotated[int, Path(description="The image's index in its gallery, from 0.")],
) -> Response:
    """A small JPEG of one image of a gallery of the run."""
    return Response(insight.thumbnail(services, run, kind, index), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})
