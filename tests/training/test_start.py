"""Training on from an earlier model: the same labels continue it, new labels rebuild the head on its backbone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from modelbuilder.errors import WeightsError
from modelbuilder.results.files import BEST_CHECKPOINT, RECIPE_FILE
from modelbuilder.training.distributed import Dist
from modelbuilder.training.engine import build_loop, run_training, training_phases
from modelbuilder.training.loop import Budget
from modelbuilder.training.model import head_prefix
from modelbuilder.training.prepare import prepare_data
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from modelbuilder.training.start import BACKBONE, CONTINUE, load_start


def _recipe(data, **changes) -> TrainConfig:
    values = {"data": str(data), "architecture": "resnet18", "weights": "none", "image_size": 32, "epochs": 1,
              "batch_size": 4, "lr": 4e-3, "seed": 2}
    return TrainConfig(**{**values, **changes})


def _built(recipe: TrainConfig, cache):
    prepared = prepare_data(recipe, cache, MemoryReporter())
    reporter = MemoryReporter()
    loop, weights = build_loop(recipe, prepared, reporter, Dist(), offline=True, budget=Budget())
    return loop, weights, reporter


def test_the_same_labels_continue_the_model_at_a_lower_learning_rate(trained, tmp_path):
    best = trained.folder / BEST_CHECKPOINT
    start = load_start(best)
    assert (start.labels, start.architecture, start.image_size) == (["cat", "dog"], "tiny", 32)
    recipe = _recipe(trained.data, architecture="resnet18", from_model=str(best))  # the start's architecture wins
    loop, weights, reporter = _built(recipe, tmp_path / "cache")
    assert type(loop.model.body).__name__ == "TinyNet"
    assert weights.source == CONTINUE
    assert training_phases("auto", weights) == ("full",)  # its head is trained already
    saved = torch.load(best, weights_only=True)["model"]
    for key, value in loop.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    rates = [g["initial_lr"] for g in loop.optimizer.param_groups]
    assert rates == pytest.approx([4e-3 * 0.1] * len(rates))  # every layer, the head too
    assert "same 2 labels" in " ".join(line for _, line in reporter.logs)


def test_new_labels_keep_the_backbone_and_rebuild_the_head(trained, image_folder, tmp_path):
    best = trained.folder / BEST_CHECKPOINT
    more = image_folder("more", per_label=4, labels=("cat", "dog", "fox"))
    loop, weights, _ = _built(_recipe(more, architecture="tiny", from_model=str(best)), tmp_path / "cache")
    assert weights.source == BACKBONE
    assert "1 new: fox" in weights.detail
    assert training_phases("auto", weights) == ("head", "full")
    saved = torch.load(best, weights_only=True)["model"]
    head = head_prefix(loop.model)
    state = loop.model.state_dict()
    assert state[head + "weight"].shape == (3, saved[head + "weight"].shape[1])
    kept = [k for k in state if not k.startswith(head)]
    assert kept
    assert all(torch.equal(state[k], saved[k]) for k in kept)
    rates = [g["initial_lr"] for g in loop.optimizer.param_groups]
    assert (min(rates), max(rates)) == pytest.approx((4e-4, 4e-3))  # the new head at the full rate, as pretrained


def test_a_run_started_from_another_records_where_it_started(trained, tmp_path):
    best = trained.folder / BEST_CHECKPOINT
    recipe = TrainConfig(data=str(trained.data), weights="none", epochs=1, batch_size=4, from_model=str(best),
                         from_run="run-0123456789ab", name="Again")
    reporter = MemoryReporter()
    result = run_training(recipe, tmp_path / "run", reporter, cache_root=tmp_path / "cache", offline=True)
    saved = json.loads((result.run_dir / RECIPE_FILE).read_text())
    assert (saved["from_model"], saved["from_run"]) == (str(best), "run-0123456789ab")
    assert (saved["architecture"], saved["image_size"]) == ("tiny", 32)  # the starting model's
    again = load_start(result.run_dir / BEST_CHECKPOINT)  # labels and recipe are in best.pt itself
    assert again.labels == ["cat", "dog"]


def test_a_checkpoint_without_its_labels_reads_them_from_its_run_folder(trained, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(trained.folder, folder)
    state = torch.load(folder / BEST_CHECKPOINT, weights_only=True)
    torch.save({"model": state["model"]}, folder / BEST_CHECKPOINT)  # as runs before this version wrote it
    assert load_start(folder / BEST_CHECKPOINT).labels == ["cat", "dog"]
    lone = tmp_path / "lone.pt"
    shutil.copyfile(folder / BEST_CHECKPOINT, lone)
    with pytest.raises(WeightsError, match="does not say which labels"):
        load_start(lone)


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_what_is_not_a_model_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "weights.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_start(path)
    assert "\n" not in info.value.message
    assert "best.pt" in info.value.hint
