"""The loop: reproducible, resumable exactly, stops cleanly, keeps the best epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelbuilder.training.checkpoint import load_checkpoint
from modelbuilder.training.job import run_training
from modelbuilder.training.loop import Preempted, steps_per_epoch, warmup_cosine
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter


def _recipe(data, **changes) -> TrainConfig:
    values = {"data": str(data), "architecture": "tiny", "weights": "none", "image_size": 32, "epochs": 4,
              "batch_size": 8, "lr": 5e-3, "seed": 1}
    values.update(changes)
    return TrainConfig(**values)


def _curve(result) -> list[tuple[float, float]]:
    return [(h["val_loss"], h["train_loss"]) for h in result.metrics["history"]]


@pytest.fixture
def data(image_folder):
    return image_folder(per_label=12, labels=("cat", "dog", "fox"))


def test_seeded_runs_are_reproducible(data, tmp_path, home):
    a = run_training(_recipe(data), tmp_path / "a", MemoryReporter())
    b = run_training(_recipe(data), tmp_path / "b", MemoryReporter())
    assert _curve(a) == _curve(b)
    c = run_training(_recipe(data, seed=2), tmp_path / "c", MemoryReporter())
    assert _curve(c) != _curve(a)


def test_resume_after_preemption_continues_exactly(data, tmp_path, home):
    straight = run_training(_recipe(data), tmp_path / "straight", MemoryReporter())
    steps = steps_per_epoch(straight.metrics["train_images"], 8)
    stopper = MemoryReporter(stop_after_steps=steps + 2, stop_reason="preempt")  # mid-epoch 2
    with pytest.raises(Preempted) as info:
        run_training(_recipe(data), tmp_path / "resumed", stopper)
    assert (info.value.epoch, info.value.step) == (1, 2)
    checkpoint = load_checkpoint(info.value.checkpoint)
    assert {"model", "optimizer", "scheduler", "state", "rng", "recipe", "labels"} <= set(checkpoint)
    assert checkpoint["state"]["epoch"] == 1
    assert checkpoint["state"]["step"] == 2
    resumed = run_training(_recipe(data), tmp_path / "resumed", MemoryReporter(), resume=info.value.checkpoint)
    np.testing.assert_allclose(_curve(resumed), _curve(straight), rtol=1e-5)
    assert resumed.metrics["accuracy"] == straight.metrics["accuracy"]


def test_cancel_stops_within_a_step_and_keeps_the_best(data, tmp_path, home):
    reporter = MemoryReporter(stop_after_steps=7, stop_reason="cancel")
    result = run_training(_recipe(data, epochs=10), tmp_path / "run", reporter)
    assert result.stopped == "cancel"
    assert sum(p.phase == "training" for p in reporter.progresses) == 7
    assert result.outputs["zip"].is_file()
    assert result.outputs["console_app"].is_dir()


def test_time_budget_stops_cleanly_and_exports(data, tmp_path, home):
    result = run_training(_recipe(data, epochs=50, time_budget_s=0.5), tmp_path / "run", MemoryReporter())
    assert result.stopped == "time_budget"
    assert len(result.metrics["history"]) < 50
    assert result.outputs["onnx"].is_file()


def test_early_stopping_and_the_best_epoch_is_what_is_exported(data, tmp_path, home):
    result = run_training(_recipe(data, epochs=30, early_stopping_patience=2, lr=3e-2), tmp_path / "r",
                          MemoryReporter())
    history = result.metrics["history"]
    best = result.metrics["best_epoch"]
    if result.stopped == "early_stopping":
        assert len(history) == best + 2
    accuracies = [h["val_accuracy"] for h in history]
    assert history[best - 1]["val_accuracy"] == max(accuracies)
    assert result.metrics["accuracy"] == pytest.approx(history[best - 1]["val_accuracy"])
    saved = torch.load(tmp_path / "r" / "checkpoints" / "best.pt", weights_only=False)
    assert saved["epoch"] == best


def test_recipe_is_saved_with_the_run_and_in_checkpoints(data, tmp_path, home):
    run_training(_recipe(data, epochs=1), tmp_path / "r", MemoryReporter())
    saved = json.loads((tmp_path / "r" / "recipe.json").read_text())
    assert saved["epochs"] == 1
    assert saved["name"] == "Data"
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["recipe"] == saved


def test_warmup_then_cosine_to_zero():
    factor = warmup_cosine(100, 10)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0)


def test_a_last_batch_of_one_image_is_dropped():
    assert steps_per_epoch(33, 8) == 4
    assert steps_per_epoch(34, 8) == 5
    assert steps_per_epoch(3, 8) == 1


def test_compile_is_cuda_only_and_says_so_elsewhere(data, tmp_path, home):
    reporter = MemoryReporter()
    result = run_training(_recipe(data, epochs=1, compile=True), tmp_path / "c", reporter)
    warnings = [message for level, message in reporter.logs if level == "warning"]
    if torch.cuda.is_available():
        assert not any("--compile" in w for w in warnings)
    else:
        assert any("--compile applies on CUDA only" in w for w in warnings), warnings
    assert result.metrics["epochs_run"] == 1
