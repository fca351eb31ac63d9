"""`/api/v1/runs/{run_id}/explain`: where the run's network finds a label in an uploaded image (`sdk.explain`,
as `modelbuilder predict RUN IMAGE --explain out/` and `Run.explain()`), for the portal's "try the model" box.

The answer carries the scores and, per method, the heatmap over the image as a base64 PNG of the image's size.
A run without results is 409, one without its checkpoint 404, a file the runtime cannot read 422 with its
reason, a label the model does not have 422 with the labels it has.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query

from modelbuilder.sdk import explain as explanations
from modelbuilder.server.deps import ImageUpload, RunDep, ServicesDep
from modelbuilder.server.schemas import ExplanationPublic

router = APIRouter(prefix="/runs/{run_id}", tags=["predict"])


@router.post("/explain", response_model_exclude_none=True)
def explain(
    run: RunDep,
    services: ServicesDep,
    data: ImageUpload,
    label: Annotated[str | None, Query(min_length=1, max_length=200,
                                       description="The label to explain (default: the prediction).")] = None,
) -> ExplanationPublic:
    """The scores of the image and, for the predicted label (or `label`), heatmaps of where the network finds
    it (Grad-CAM on the last convolutional stage, integrated gradients), over the image."""
    found = explanations.explain_run(services, run, data, label=label)
    width, height = found.size
    return ExplanationPublic(prediction=found.prediction, score=found.score, labels=found.labels,
                             scores=found.scores, label=found.label, width=width, height=height,
                             overlays={m: base64.b64encode(png).decode("ascii") for m, png in found.overlays.items()})
