"""`/api/v1/runs/{run_id}/predict`: classify one uploaded image with the run's model ("try the model").

The run's MLModel.zip is loaded once into a PredictionEngine and kept (a few runs' worth). The image is
decoded by the same runtime the generated projects use: a file it cannot read is 422 with its reason,
an upload over 20 MiB is 413, and a run without results is 409.
"""

from __future__ import annotations

from fastapi import APIRouter

from modelbuilder.results.files import RESULT_MARKER
from modelbuilder.sdk import results
from modelbuilder.server.deps import ImageUpload, RunDep, ServicesDep, StateDep
from modelbuilder.server.schemas import PredictionPublic

router = APIRouter(prefix="/runs/{run_id}", tags=["predict"])


@router.post("/predict", response_model_exclude_none=True)  # predicted_labels: multi-label models only
def predict(run: RunDep, services: ServicesDep, state: StateDep, data: ImageUpload) -> PredictionPublic:
    """The predicted label and the probability of every label."""
    run_dir = results.require_results(services, run)
    engine = state.engines.get(run.id, run_dir / RESULT_MARKER)
    return PredictionPublic.of(engine.predict(data), engine.labels)
