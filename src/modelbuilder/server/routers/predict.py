"""`/api/v1/runs/{run_id}/predict`: classify one uploaded image with the run's model ("try the model").

The run's MLModel.zip is loaded once into a PredictionEngine and kept (a few runs' worth). The image is
decoded by the same runtime the generated projects use: a file it cannot read is 422 with its reason,
an upload over 20 MiB is 413, and a run without results is 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from modelbuilder.errors import PayloadTooLarge
from modelbuilder.results.files import RESULT_MARKER
from modelbuilder.sdk import results
from modelbuilder.server.deps import RunDep, ServicesDep, StateDep
from modelbuilder.server.middleware import UPLOAD_LIMIT
from modelbuilder.server.schemas import PredictionPublic

router = APIRouter(prefix="/runs/{run_id}", tags=["predict"])


@router.post("/predict")
def predict(
    run: RunDep,
    services: ServicesDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description="One image: JPEG, PNG, BMP, GIF, TIFF or WebP, at most 20 MiB.")],
) -> PredictionPublic:
    """The predicted label and the probability of every label."""
    run_dir = results.require_results(services, run)
    data = file.file.read(UPLOAD_LIMIT + 1)
    if len(data) > UPLOAD_LIMIT:
        raise PayloadTooLarge(f"The image is larger than {UPLOAD_LIMIT >> 20} MiB.", "send a smaller image.")
    engine = state.engines.get(run.id, run_dir / RESULT_MARKER)
    output = engine.predict(data)
    labels = engine.labels
    return PredictionPublic(prediction=output.prediction, score=output.score, labels=labels,
                            scores=dict(zip(labels, output.score, strict=True)))
