"""Data-parallel training: the same run with 1 and with 2 gloo processes (torchrun) agrees."""

from __future__ import annotations

import pytest

from modelbuilder.config import get_settings
from modelbuilder.core.artifacts import ArtifactStore
from tests.imagery import make_image_folder

pytestmark = pytest.mark.slow


def test_two_processes_match_one_with_the_same_global_batch(plane, agent, tmp_path):
    data = make_image_folder(tmp_path / "three", per_label=16, labels=("cat", "dog", "fox"))
    recipe = {"data": str(data), "epochs": 4, "batch_size": 8, "early_stopping_patience": 100}
    one = plane.submit(**recipe, processes=1)
    two = plane.submit(**recipe, processes=2)
    done = {run.id: plane.wait_ended(run.id, timeout=400) for run in (one, two)}
    assert [done[r.id].status for r in (one, two)] == ["Completed", "Completed"], [done[r.id].error for r in (one, two)]
    acc_one, acc_two = (done[r.id].best_metrics["accuracy"] for r in (one, two))
    assert abs(acc_one - acc_two) <= 0.05, (acc_one, acc_two)

    # metrics once per epoch, not once per rank; one "Training" line; one set of results
    points = plane.recorder.metrics(two.id, "val_accuracy")
    assert sorted(p.step for p in points) == [1, 2, 3, 4]
    logs = [line.message for line in plane.recorder.logs(two.id)]
    training = [m for m in logs if m.startswith("Training ")]
    assert len(training) == 1
    assert "x 2 processes" in training[0]
    files = [a.path for a in ArtifactStore(get_settings().artifacts).list(two.id)]
    assert files.count("bestModel.onnx") == 1
    assert files.count("MLModel.zip") == 1
    statuses = [h.status for h in plane.runs.history(two.id)]
    assert statuses == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
