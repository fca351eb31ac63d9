"""An int8 export (sdk/export.py) through the SDK's objects: the run's own validation images, the files
beside the float model and recorded as the run's artifacts, both models measured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, NotFound
from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE
from modelbuilder.results.runtime import PredictionEngine
from modelbuilder.sdk import Workspace, export
from tests.completed import TINY_RECIPE, TrainedRun, make_completed_run


@pytest.fixture
def services(home: Path) -> Iterator[Services]:
    with Services() as opened:
        yield opened


def test_a_finished_run_exports_int8_beside_its_float_model(services: Services, trained: TrainedRun) -> None:
    run = Workspace.get(services=services).run(make_completed_run(services, trained))
    steps: list[str] = []
    result = run.export_int8(on_step=steps.append)
    run_dir = services.artifacts.run_dir(run.id)
    assert (result.onnx, result.package) == (run_dir / INT8_MODEL_FILE, run_dir / INT8_ZIP_FILE)
    assert result.images == trained.metrics["num_images"]  # every validation image of the run, split again
    assert result.float_accuracy == pytest.approx(float(trained.metrics["accuracy"]), abs=1e-4)  # type: ignore[arg-type]
    assert 0.0 <= result.int8_accuracy <= 1.0
    assert any("calibrating" in step for step in steps)
    assert PredictionEngine.load(result.package).labels == ["cat", "dog"]
    recorded = {a.path: a for a in services.recorder.artifacts(run.id)}
    assert recorded[INT8_ZIP_FILE].size == result.package.stat().st_size  # listed with the run's artifacts


def test_a_run_without_results_cannot_be_exported(services: Services, trained: TrainedRun) -> None:
    services.workspaces.ensure_default()
    queued = services.runs.submit("default", "pets", "local", {"data": str(trained.data), **TINY_RECIPE})
    with pytest.raises(Conflict, match="has no results yet"):
        Workspace.get(services=services).run(queued.id).export_int8()
    with pytest.raises(Conflict, match="has no results yet"):  # by its id, as `modelbuilder export RUN` does
        export.export_int8(services, queued.id)
    with pytest.raises(NotFound, match="Run 'run-0123456789ab' does not exist"):  # not "has no finished model"
        export.export_int8(services, "run-0123456789ab")
