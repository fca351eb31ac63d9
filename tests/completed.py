"""A run that really trained, for tests that need results: one tiny training per test session (the root
conftest's `trained` fixture), walked through the store's lifecycle into any test's store as a worker would."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.results.files import METRICS_FILE
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import NullReporter
from tests.imagery import make_image_folder

TINY_RECIPE = {"architecture": "tiny", "weights": "none", "image_size": 32, "epochs": 2, "batch_size": 4,
               "name": "Tiny"}


@dataclass(frozen=True)
class TrainedRun:
    data: Path  # the images it trained on
    folder: Path  # the run folder the engine wrote
    metrics: dict[str, object]


def train_tiny(root: Path) -> TrainedRun:
    """One real tiny training (2 labels x 10 images, 32 px, 2 epochs) and its exported results."""
    from modelbuilder.training.engine import run_training  # torch: only sessions that need a trained run pay it

    data = make_image_folder(root / "pets", per_label=10)
    recipe = TrainConfig.from_dict({"data": str(data), **TINY_RECIPE})
    result = run_training(recipe, root / "run", NullReporter(), cache_root=root / "cache", offline=True)
    return TrainedRun(data, result.run_dir, json.loads((result.run_dir / METRICS_FILE).read_text()))


def make_completed_run(services: Services, trained: TrainedRun) -> str:
    """Walk a run through its lifecycle as a worker would, with `trained`'s real results; returns its id."""
    _, compute = services.workspaces.ensure_default()
    run = services.runs.submit("default", "pets", "local", {"data": str(trained.data), **TINY_RECIPE},
                               project_name="Tiny")
    claimed = services.leases.claim_next_run([compute.id], "test-worker", 60)
    assert claimed is not None
    assert claimed.id == run.id
    attempt = claimed.attempt
    services.runs.transition(run.id, e.RUNNING, "training from the start", attempt)
    services.recorder.append_logs(run.id, attempt, ["Running: training from the start",
                                                    ("warning", "a <b>warning</b>")])
    for record in trained.metrics["history"]:  # type: ignore[union-attr]
        values = {k: v for k, v in record.items() if k not in ("epoch", "partial")}
        services.recorder.log_metrics(run.id, attempt, int(record["epoch"]), values)
    services.runs.transition(run.id, e.FINALIZING, "evaluating and exporting", attempt)
    shutil.copytree(trained.folder, services.artifacts.run_dir(run.id))
    services.recorder.record_artifacts(run.id, services.artifacts.list(run.id), attempt)
    services.recorder.set_best_metrics(run.id, attempt, {"accuracy": float(trained.metrics["accuracy"])})  # type: ignore[arg-type]
    services.runs.transition(run.id, e.COMPLETED, "validation accuracy 1.0", attempt)
    return run.id
