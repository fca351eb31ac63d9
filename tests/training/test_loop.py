"""The loop: reproducible, resumable exactly, stops cleanly, keeps the best epoch."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from modelbuilder.training.checkpoint import TrainState, load_checkpoint
from modelbuilder.training.distributed import Dist
from modelbuilder.training.engine import build_loop, prepare_data, run_training
from modelbuilder.training.loop import (
    Budget,
    Preempted,
    Split,
    evaluate,
    fit,
    recalibrate_batchnorm,
    sample,
    steps_per_epoch,
    train_one_epoch,
    warmup_cosine,
)
from modelbuilder.training.recipe import DEFAULT_EPOCHS, TrainConfig
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


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.9, "mixup_alpha": 0.4, "cutmix_alpha": 1.0}],
                         ids=["plain", "ema+mix"])
def test_resume_after_preemption_continues_exactly(data, tmp_path, home, extra):
    straight = run_training(_recipe(data, **extra), tmp_path / "straight", MemoryReporter())
    steps = steps_per_epoch(straight.metrics["train_images"], 8)
    stopper = MemoryReporter(stop_after_steps=steps + 2, stop_reason="preempt")  # mid-epoch 2
    with pytest.raises(Preempted) as info:
        run_training(_recipe(data, **extra), tmp_path / "resumed", stopper)
    assert (info.value.epoch, info.value.step) == (1, 2)
    checkpoint = load_checkpoint(info.value.checkpoint)
    assert {"model", "optimizer", "scheduler", "state", "rng", "recipe", "labels"} <= set(checkpoint)
    assert checkpoint["state"]["epoch"] == 1
    assert checkpoint["state"]["step"] == 2
    resumed = run_training(_recipe(data, **extra), tmp_path / "resumed", MemoryReporter(),
                           resume=info.value.checkpoint)
    np.testing.assert_allclose(_curve(resumed), _curve(straight), rtol=1e-5)
    assert resumed.metrics["accuracy"] == straight.metrics["accuracy"]


def test_cancel_stops_within_a_step_and_keeps_the_best(data, tmp_path, home):
    reporter = MemoryReporter(stop_after_steps=7, stop_reason="cancel")
    result = run_training(_recipe(data, epochs=10), tmp_path / "run", reporter)
    assert result.stopped == "cancel"
    assert sum(p.phase == "training" for p in reporter.progresses) == 7
    assert result.outputs["zip"].is_file()
    assert result.outputs["console_app"].is_dir()


class TickingClock:
    """A clock that moves `tick` seconds each time it is read: time passes with the work, not the machine."""

    def __init__(self, tick: float = 1.0) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_with_epochs_stops_cleanly_at_the_budget_and_exports(data, tmp_path, home):
    reporter = MemoryReporter()
    recipe = _recipe(data, epochs=50, time_budget_s=120, early_stopping_patience=100)
    result = run_training(recipe, tmp_path / "run", reporter, clock=TickingClock())
    assert result.stopped == "time_budget"
    assert 1 <= len(result.metrics["history"]) < 50
    assert result.outputs["onnx"].is_file()
    assert any("of the 50 epochs fit in the time budget" in m for m in reporter.messages())


def test_time_budget_without_epochs_plans_a_schedule_that_runs_to_its_end(data, tmp_path, home):
    reporter = MemoryReporter()
    recipe = _recipe(data, epochs=None, time_budget_s=150, early_stopping_patience=100)
    result = run_training(recipe, tmp_path / "run", reporter, clock=TickingClock())
    planned = json.loads((tmp_path / "run" / "recipe.json").read_text())["epochs"]
    history = result.metrics["history"]
    assert result.stopped == "completed"
    assert len(history) == planned > 1
    assert history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the learning rate decayed to its end
    assert any(m.startswith("Time budget:") and f"so {planned} epoch(s) fit" in m for m in reporter.messages())


def test_planning_leaves_the_training_as_it_would_have_been(data, tmp_path, home):
    """The probe steps are restored: a planned run trains exactly as a run given the same epochs."""
    planned = run_training(_recipe(data, epochs=None, time_budget_s=150), tmp_path / "p", MemoryReporter(),
                           clock=TickingClock())
    epochs = len(planned.metrics["history"])
    plain = run_training(_recipe(data, epochs=epochs), tmp_path / "e", MemoryReporter())
    assert _curve(planned) == _curve(plain)


def test_without_a_budget_or_epochs_the_default_epochs_are_used(data, tmp_path, home):
    result = run_training(_recipe(data, epochs=None, early_stopping_patience=100, image_size=16), tmp_path / "d",
                          MemoryReporter())
    assert len(result.metrics["history"]) == DEFAULT_EPOCHS
    assert json.loads((tmp_path / "d" / "recipe.json").read_text())["epochs"] == DEFAULT_EPOCHS


def test_batchnorm_statistics_come_from_a_sample_across_labels_whatever_the_stored_order(data, tmp_path, home):
    """The training split is stored sorted by label; re-estimation must not see only the first labels."""
    recipe = _recipe(data, epochs=1)
    reporter = MemoryReporter()
    prepared = prepare_data(recipe, tmp_path / "cache", reporter)
    loop, _ = build_loop(recipe, prepared, reporter, Dist(), offline=True, budget=Budget())
    train = prepared.train
    drawn = sample(train, 12, seed=1)
    assert len(drawn) == 12
    assert len(set(drawn.targets.tolist())) == 3  # every label, though the first 12 stored are two labels only
    assert len(set(train.targets[:12].tolist())) < 3
    shuffled_order = np.random.default_rng(5).permutation(len(train))
    shuffled = Split(train.cache, train.records[shuffled_order], train.targets[shuffled_order])
    np.testing.assert_array_equal(sample(shuffled, 12, seed=1).records, drawn.records)

    def statistics(split):
        recalibrate_batchnorm(loop, split, images=12)
        return [m.running_mean.clone() for m in loop.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    for a, b in zip(statistics(train), statistics(shuffled), strict=True):
        torch.testing.assert_close(a, b)


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


# --- the loop's functions on their own, on a loop built as the engine builds it ------------------------------
@pytest.fixture
def built(data, tmp_path, home):
    """(loop, prepared data) for the tiny model, without running the engine."""
    recipe = _recipe(data, epochs=3)
    reporter = MemoryReporter()
    prepared = prepare_data(recipe, tmp_path / "cache", reporter)
    loop, _ = build_loop(recipe, prepared, reporter, Dist(), offline=True, budget=Budget())
    return loop, prepared


def test_train_one_epoch_reports_every_step_and_stops_at_a_cancel(built):
    loop, prepared = built
    steps = steps_per_epoch(len(prepared.train), loop.batch_size)
    state = TrainState()
    assert train_one_epoch(loop, prepared.train, state) is None
    dropped = 1 if len(prepared.train) % loop.batch_size == 1 else 0  # a last batch of one image
    assert (state.step, state.partial["images"]) == (steps, len(prepared.train) - dropped)
    assert [p.step for p in loop.reporter.progresses if p.phase == "training"] == list(range(1, steps + 1))
    stopper = replace(loop, reporter=MemoryReporter(stop_after_steps=2))
    state = TrainState(epoch=1)
    assert train_one_epoch(stopper, prepared.train, state) == "cancel"
    assert state.step == 2


def test_the_budget_stops_an_epoch_at_the_next_step(built):
    loop, prepared = built
    clock = TickingClock()
    over = replace(loop, budget=Budget(clock, stop_at=clock.now + 3))  # a step reads the clock once
    state = TrainState()
    assert train_one_epoch(over, prepared.train, state) == "time_budget"
    assert 1 <= state.step < steps_per_epoch(len(prepared.train), loop.batch_size)


def test_evaluate_gives_probabilities_and_their_accuracy(built):
    loop, prepared = built
    loss, accuracy, probs = evaluate(loop, prepared.val)
    assert probs.shape == (len(prepared.val), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert accuracy == pytest.approx(float((probs.argmax(1) == prepared.val.targets).mean()))
    assert loss > 0


def test_fit_keeps_the_best_epoch_and_checkpoints_each_one(built, tmp_path):
    loop, prepared = built
    result = fit(loop, prepared.train, prepared.val, TrainState(), tmp_path / "run", {"seed": 1}, ["a", "b", "c"],
                 bn_images=16, patience=10)
    assert result.stopped == "completed"
    history = result.state.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = max(range(3), key=lambda i: (history[i]["val_accuracy"], -history[i]["val_loss"]))
    assert result.state.best_epoch == best + 1
    assert torch.load(result.best_weights, weights_only=False)["epoch"] == best + 1
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]["epoch"] == 3
    assert [epoch for _, epoch, _ in loop.reporter.checkpoints] == [1, 2, 3]


def test_fit_stops_early_when_accuracy_stops_improving(built, tmp_path):
    loop, prepared = built
    frozen = replace(loop, epochs=20)
    for group in frozen.optimizer.param_groups:  # nothing changes: accuracy can never improve after epoch 1
        group["lr"] = 0.0
    frozen = replace(frozen, scheduler=torch.optim.lr_scheduler.LambdaLR(frozen.optimizer, lambda step: 0.0))
    result = fit(frozen, prepared.train, prepared.val, TrainState(), tmp_path / "run", {}, ["a", "b", "c"],
                 bn_images=16, patience=2)
    assert result.stopped == "early_stopping"
    assert len(result.state.history) == 3
