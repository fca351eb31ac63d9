"""Head-only training on cached backbone features, and --mode auto (head, then a full fine-tune)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from modelbuilder.errors import InvalidInput
from modelbuilder.training.engine import run_training
from modelbuilder.training.head import train_head
from modelbuilder.training.loop import Preempted
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """Stands in for pretrained weights (none can be downloaded here): a saved torchvision state dict."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _recipe(data, weights, **changes):
    return TrainConfig(**{"data": str(data), "architecture": "resnet18", "weights": str(weights),
                          "image_size": 32, "batch_size": 8, "epochs": 2, "head_epochs": 15, **changes})


def test_head_mode_trains_only_the_head_on_cached_features(image_folder, backbone_file, tmp_path, home):
    data = image_folder(per_label=10, labels=("cat", "dog", "fox"))
    first = MemoryReporter()
    result = run_training(_recipe(data, backbone_file, mode="head"), tmp_path / "a", first, cache_root=tmp_path / "c")
    assert len(result.metrics["history"]) == 15
    assert result.stopped == "completed"
    assert result.outputs["zip"].is_file()
    assert not any(p.phase == "training" for p in first.progresses)  # no backbone training step at all
    assert any("Computed backbone features" in m for m in first.messages())
    trained = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=False)["model"]
    original = torch.load(backbone_file)
    assert torch.equal(trained["body.conv1.weight"], original["conv1.weight"])  # the backbone stayed frozen
    assert result.metrics["accuracy"] > 1 / 3  # better than chance on three labels

    second = MemoryReporter()
    run_training(_recipe(data, backbone_file, mode="head"), tmp_path / "b", second, cache_root=tmp_path / "c")
    assert not any("Computed backbone features" in m for m in second.messages())  # reused


def test_auto_mode_does_the_head_then_a_full_fine_tune(image_folder, backbone_file, tmp_path, home):
    data = image_folder(per_label=8)
    result = run_training(_recipe(data, backbone_file, mode="auto"), tmp_path / "r", MemoryReporter(),
                          cache_root=tmp_path / "c")
    assert len(result.metrics["head_history"]) == 15
    assert len(result.metrics["history"]) == 2


def test_auto_without_pretrained_weights_is_a_full_training(image_folder, tmp_path, home):
    data = image_folder(per_label=6)
    result = run_training(TrainConfig(data=str(data), architecture="tiny", weights="none", image_size=32, epochs=1,
                                      batch_size=4), tmp_path / "r", MemoryReporter(), cache_root=tmp_path / "c")
    assert "head_history" not in result.metrics


def test_head_mode_without_weights_is_refused():
    with pytest.raises(InvalidInput, match="Mode 'head'"):
        TrainConfig(data="x", mode="head", weights="none")


class StopWhenAsked(MemoryReporter):
    """Asks the engine to stop (`reason`) the `asked`-th time it checks, wherever that is."""

    def __init__(self, asked: int, reason: str = "cancel") -> None:
        super().__init__()
        self.asked, self.reason, self.calls = asked, reason, 0

    def should_stop(self):
        self.calls += 1
        return self.reason if self.calls >= self.asked else None


def test_cancel_while_features_are_extracted_stops_and_still_exports(image_folder, backbone_file, tmp_path, home):
    data = image_folder(per_label=10, labels=("cat", "dog", "fox"))
    reporter = StopWhenAsked(1)
    result = run_training(_recipe(data, backbone_file, mode="head"), tmp_path / "r", reporter,
                          cache_root=tmp_path / "c")
    assert result.stopped == "cancel"
    assert sum(p.phase == "features" for p in reporter.progresses) == 1  # stopped at the first batch
    assert result.outputs["zip"].is_file()
    assert not (tmp_path / "c" / "features").exists() or not list((tmp_path / "c" / "features").iterdir())


class StopInHeadEpoch(MemoryReporter):
    """Cancels after the `epochs`-th head epoch: counts the checks made once the features are ready."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs, self.counting, self.calls = epochs, False, 0

    def log(self, message, level="info"):
        super().log(message, level)
        self.counting = self.counting or message.startswith("Computed backbone features of") and "validation" in message

    def should_stop(self):
        self.calls += self.counting
        return "cancel" if self.calls >= self.epochs else None


def test_cancel_in_the_head_epochs_of_auto_keeps_the_best_head_and_skips_the_fine_tune(image_folder, backbone_file,
                                                                                      tmp_path, home):
    data = image_folder(per_label=8)
    reporter = StopInHeadEpoch(4)
    result = run_training(_recipe(data, backbone_file, mode="auto"), tmp_path / "r", reporter,
                          cache_root=tmp_path / "c")
    assert result.stopped == "cancel"
    assert len(result.metrics["history"]) == 4  # head epochs, then no more
    assert not any(p.phase == "training" for p in reporter.progresses)
    assert result.outputs["zip"].is_file()


def test_preemption_in_the_head_phase_asks_for_a_fresh_start(image_folder, backbone_file, tmp_path, home):
    data = image_folder(per_label=8)
    with pytest.raises(Preempted) as stopped:
        run_training(_recipe(data, backbone_file, mode="head"), tmp_path / "r", StopWhenAsked(3, "preempt"),
                     cache_root=tmp_path / "c")
    assert stopped.value.checkpoint is None
    again = run_training(_recipe(data, backbone_file, mode="head"), tmp_path / "r", MemoryReporter(),
                         cache_root=tmp_path / "c")
    assert again.stopped == "completed"


def test_the_time_budget_stops_the_head_phase(image_folder, backbone_file, tmp_path, home):
    data = image_folder(per_label=8)
    clock = iter(range(0, 10**6, 5))  # every reading of the clock is 5 s later
    result = run_training(_recipe(data, backbone_file, mode="head", time_budget_s=20), tmp_path / "r",
                          MemoryReporter(), cache_root=tmp_path / "c", clock=lambda: float(next(clock)))
    assert result.stopped == "time_budget"
    assert result.outputs["zip"].is_file()


@pytest.mark.parametrize("steps", [1, 2, 3, 10, 11, 20])
def test_the_head_trains_with_any_number_of_steps(steps):
    """One batch per epoch, so the head takes `steps` optimizer steps in all: with 10 of them a 10% warm-up was
    0 steps and the schedule divided by zero. Every count reaches the full learning rate (a warm-up of at
    least one step, or a constant rate where there is no room for one) and moves the head."""
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(8, 4)).astype(np.float32)
    ys = np.array([0, 1] * 4, dtype=np.int64)
    torch.manual_seed(0)
    head, lr = nn.Linear(4, 2), 1e-2
    before = head.weight.detach().clone()
    history, stopped = train_head(head, xs, ys, xs, ys, epochs=steps, lr=lr, weight_decay=0.0, label_smoothing=0.0,
                                  seed=0)
    assert stopped is None
    assert [h["epoch"] for h in history] == list(range(1, steps + 1))
    assert max(h["lr"] for h in history) == pytest.approx(lr)
    if steps == 1:  # AdamW's first step moves every weight by about the learning rate it ran at
        assert float((head.weight.detach() - before).abs().max()) > lr / 2
