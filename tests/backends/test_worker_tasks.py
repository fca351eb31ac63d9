"""A multi-label run and a run started from it, executed by a real agent and worker: each completes and keeps
the metrics of its task in the store."""

from __future__ import annotations

import pytest

from modelbuilder.core.services import artifact_store
from modelbuilder.results.files import BEST_CHECKPOINT
from tests.imagery import make_multilabel_set

pytestmark = pytest.mark.slow


def test_a_multilabel_run_and_one_continued_from_it_complete(plane, agent, tmp_path):
    manifest = make_multilabel_set(tmp_path / "tags", per_label=6)
    first = plane.submit(data=str(manifest), epochs=2, precision="fp32")
    done = plane.wait_ended(first.id)
    assert done.status == "Completed", done.error
    assert {"accuracy", "micro_f1", "macro_f1", "mean_average_precision"} <= set(done.best_metrics)
    assert "macro_accuracy" not in done.best_metrics  # a multi-class figure
    best = artifact_store().run_dir(first.id) / BEST_CHECKPOINT
    again = plane.submit(data=str(manifest), epochs=1, precision="fp32", from_model=str(best), from_run=first.id)
    done = plane.wait_ended(again.id)
    assert done.status == "Completed", done.error
    messages = [line.message for line in plane.recorder.logs(again.id)]
    assert any("continued from" in m and "same 3 labels" in m for m in messages), messages


def test_a_multilabel_run_trains_data_parallel(plane, agent, tmp_path):
    manifest = make_multilabel_set(tmp_path / "tags", per_label=8)
    run = plane.submit(data=str(manifest), epochs=2, batch_size=8, precision="fp32", processes=2)
    done = plane.wait_ended(run.id, timeout=400)
    assert done.status == "Completed", done.error
    assert "mean_average_precision" in done.best_metrics
    assert any("x 2 processes" in line.message for line in plane.recorder.logs(run.id))
