"""`/api/v1/runs/{run_id}/export`: write an int8 version of a finished run's model, and compare it with the float one.

The same export as `modelbuilder export RUN_ID` and the SDK's `Run.export_int8()` (`sdk.export`): it is
calibrated on the run's validation images, written into the run's folder (bestModel.int8.onnx and
MLModel.int8.zip, then downloadable as artifacts), and measured on those images. It takes from seconds
to a couple of minutes; 409 while the run has no results, or while another export of it is under way.
"""

from __future__ import annotations

from fastapi import APIRouter

from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE
from modelbuilder.sdk import export, results
from modelbuilder.server.deps import RunDep, ServicesDep
from modelbuilder.server.schemas import ArtifactPublic, ExportCreate, ExportPublic

router = APIRouter(prefix="/runs/{run_id}", tags=["artifacts"])


@router.post("/export")
def export_run(run: RunDep, body: ExportCreate, services: ServicesDep) -> ExportPublic:
    """Quantize the run's model to int8 (static, calibrated), write it beside the float one, and measure both."""
    results.require_results(services, run)
    done = export.export_int8(services, run.id, calibration_images=body.calibration_images)
    written = [services.artifacts.describe(run.id, relpath) for relpath in (INT8_MODEL_FILE, INT8_ZIP_FILE)]
    return ExportPublic(
        quantize=body.quantize, artifacts=[ArtifactPublic.of(record) for record in written], images=done.images,
        calibration_images=done.calibration_images, float_accuracy=done.float_accuracy,
        int8_accuracy=done.int8_accuracy, float_ms_per_image=done.float_ms_per_image,
        int8_ms_per_image=done.int8_ms_per_image, speedup=done.speedup, float_bytes=done.float_bytes,
        int8_bytes=done.int8_bytes, weight_bits=7 if done.reduce_range else 8, calibration=done.calibration,
        calibration_scores=done.calibration_scores)
