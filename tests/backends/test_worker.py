"""The worker (backends/worker.py) with a real agent and real training: it reports every status and records
every file of the run, and a mistake in the user's data fails the run at once, without retries."""

from __future__ import annotations

import pytest

from modelbuilder.core.services import artifact_store

pytestmark = pytest.mark.slow


def _statuses(plane, run_id):
    return [h.status for h in plane.runs.history(run_id)]


def test_a_run_goes_through_every_status_and_records_everything(plane, agent):
    run = plane.submit(epochs=2)
    done = plane.wait_ended(run.id)
    assert done.status == "Completed", done.error
    assert _statuses(plane, run.id) == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert all(h.reason for h in plane.runs.history(run.id))
    epochs = sorted({m.step for m in plane.recorder.metrics(run.id, "val_accuracy")})
    assert epochs == [1, 2]
    assert done.best_metrics["accuracy"] >= 0.0
    assert done.compute_seconds > 0
    messages = [line.message for line in plane.recorder.logs(run.id)]
    assert any("Training tiny" in m for m in messages)
    recorded = {a.path: a for a in plane.recorder.artifacts(run.id)}
    for path in ("bestModel.onnx", "bestModelMap.json", "MLModel.zip", "metrics.json", "data_report.json",
                 "recipe.json", "Tiny.ConsoleApp/main.py", "checkpoints/last.pt"):
        assert path in recorded, path
    # what is recorded is what is on disk
    on_disk = {a.path: a for a in artifact_store().list(run.id)}
    for path, record in recorded.items():
        assert (on_disk[path].size, on_disk[path].sha256) == (record.size, record.sha256), path


def test_a_user_mistake_fails_at_once_without_retries(plane, agent, tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    (tmp_path / "one" / "only" / "x.png").write_bytes(b"not really")
    run = plane.runs.submit("default", "exp", "local", plane.recipe(data=str(tmp_path / "one")),
                            project_name="Tiny")
    done = plane.wait_ended(run.id, timeout=60)
    assert done.status == "Failed"
    assert done.attempt == 1
    assert "No images" in done.error or "one label" in done.error
