"""The data report's findings on small synthetic sets with known answers: exact and near duplicates
(within a label, across labels, across the split), label balance and class weights, likely wrong labels,
overfitting, and the predictions and thumbnails a run keeps.

The images are real files written by Pillow. Each is a smooth random pattern of its own (so no two are
near duplicates by chance) tinted with its label's colour (so a network tells the labels apart at once).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modelbuilder.errors import InvalidInput
from modelbuilder.results.files import DATA_REPORT_FILE, PREDICTIONS_FILE, THUMBNAILS_FILE
from modelbuilder.training import duplicates
from modelbuilder.training.balance import SMALLEST_SHARE, balance_finding, class_weights, reweight_from
from modelbuilder.training.distributed import Dist
from modelbuilder.training.engine import build_loop, run_training
from modelbuilder.training.loop import Budget
from modelbuilder.training.predictions import read_predictions
from modelbuilder.training.prepare import prepare_data
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from modelbuilder.training.suspects import OVERFIT_GAP, out_of_sample_probs, overfitting_finding, rank_suspects

TINTS = {"red": (1.0, 0.25, 0.25), "blue": (0.25, 0.25, 1.0), "green": (0.25, 1.0, 0.25)}


def pattern(seed: int, label: str, size: int = 64) -> Image.Image:
    """A smooth random pattern (a 5x5 grid of random grey levels, upscaled) tinted with `label`'s colour."""
    rng = np.random.default_rng(seed)
    grid = Image.fromarray((rng.random((5, 5)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    grey = np.asarray(grid, dtype=np.float64)[..., None] * 0.7 + 60
    return Image.fromarray(np.clip(grey * np.array(TINTS[label]), 0, 255).astype(np.uint8))


def make_set(root: Path, per_label: dict[str, int], first_seed: int = 0) -> dict[str, list[Path]]:
    made: dict[str, list[Path]] = {}
    seed = first_seed
    for label, count in per_label.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / label / f"{label}-{i:03d}.png"
            pattern(seed, label).save(path)
            made.setdefault(label, []).append(path)
            seed += 1
    return made


def test_duplicates_within_a_label_across_labels_and_across_the_split(tmp_path: Path) -> None:
    train = tmp_path / "train"
    made = make_set(train, {"red": 12, "blue": 12})
    val = tmp_path / "val"
    make_set(val, {"red": 4, "blue": 4}, first_seed=1000)
    # within a label: an exact copy, and a near copy (resized and saved again as a JPEG)
    (train / "red" / "copy.png").write_bytes(made["red"][0].read_bytes())
    Image.open(made["red"][1]).resize((50, 50)).save(train / "red" / "smaller.jpg", quality=90)
    # across labels: the same picture filed under both (a labelling conflict)
    (train / "blue" / "conflict.png").write_bytes(made["red"][2].read_bytes())
    # across the split: two training images copied into the validation data (leaks)
    (val / "blue" / "leak.png").write_bytes(made["blue"][3].read_bytes())
    Image.open(made["red"][4]).resize((56, 56)).save(val / "red" / "leak-near.jpg", quality=90)

    data = prepare_data(TrainConfig(data=str(train), validation_data=str(val), image_size=32),
                        tmp_path / "cache", MemoryReporter())
    found = data.report.duplicates
    assert found["checked_images"] == 27 + 10
    pairs = {tuple(sorted(image["path"] for image in p["images"])): p for p in found["pairs"]}
    assert set(pairs) == {("red/copy.png", "red/red-000.png"), ("red/red-001.png", "red/smaller.jpg"),
                          ("blue/conflict.png", "red/red-002.png"), ("blue/blue-003.png", "blue/leak.png"),
                          ("red/leak-near.jpg", "red/red-004.png")}
    assert pairs[("red/copy.png", "red/red-000.png")]["kind"] == "exact"
    assert pairs[("red/red-001.png", "red/smaller.jpg")]["kind"] == "near"
    assert pairs[("blue/conflict.png", "red/red-002.png")]["across_labels"]
    assert pairs[("blue/blue-003.png", "blue/leak.png")]["across_split"]
    assert (found["within_label"], found["within_label_exact"], found["across_labels"], found["across_split"]) == \
        (2, 1, 1, 2)
    assert found["pairs"][0]["across_labels"]  # conflicts first, then leaks
    lines = {line["topic"]: line for line in data.report.summary()}
    assert lines["leaks"]["level"] == "warning"
    assert "2 pairs" in lines["leaks"]["text"]
    assert "1 pairs" in lines["conflicts"]["text"]
    assert lines["duplicates"]["text"].startswith("Duplicates within a label: 2 pairs (1 exact)")


def test_a_clean_set_has_no_duplicates(tmp_path: Path) -> None:
    make_set(tmp_path / "data", {"red": 15, "blue": 15})
    (tmp_path / "data" / "red" / "broken.jpg").write_bytes(b"no image")
    data = prepare_data(TrainConfig(data=str(tmp_path / "data"), image_size=32), tmp_path / "cache", MemoryReporter())
    assert data.report.duplicates["pairs_total"] == 0
    assert data.report.duplicates["complete"]
    assert data.report.balance["warning"] is None
    lines = {line["topic"]: line for line in data.report.summary()}
    assert lines["skipped"]["level"] == "warning"
    assert lines["skipped"]["text"].startswith("Skipped files: 1 could not be used")
    assert [lines[t]["level"] for t in ("duplicates", "conflicts", "leaks", "balance")] == ["ok"] * 4


def test_thousands_of_copies_of_one_picture_stop_counting_instead_of_filling_memory(monkeypatch) -> None:
    monkeypatch.setattr(duplicates, "PAIRS_COUNTED", 2_000)
    n = 300  # 44,850 pairs of exact (and near) copies
    prints = duplicates.Fingerprints(["same"] * n, np.full(n, 7, dtype=np.uint64), np.full(n, 9, dtype=np.uint64))
    found = duplicates.find_duplicates([duplicates.DataImage(f"a/{i}.png", "a", "training") for i in range(n)],
                                       prints)
    assert not found["complete"]
    assert found["within_label_exact"] == 2_000
    assert len(found["pairs"]) == duplicates.PAIRS_KEPT


def test_copies_with_the_same_labels_in_another_order_are_no_conflict() -> None:
    """A multi-label manifest may list one photo's labels in any order: the same set is the same labels."""
    prints = duplicates.Fingerprints(["same"] * 3, np.full(3, 7, dtype=np.uint64), np.full(3, 9, dtype=np.uint64))
    images = [duplicates.DataImage("a.png", "cat;bright", "training"),
              duplicates.DataImage("b.png", "bright;cat", "training"),
              duplicates.DataImage("c.png", "cat", "training")]
    found = duplicates.find_duplicates(images, prints)
    conflicts = {tuple(i["path"] for i in p["images"]) for p in found["pairs"] if p["across_labels"]}
    assert conflicts == {("a.png", "c.png"), ("b.png", "c.png")}


def test_near_pairs_are_those_within_both_thresholds() -> None:
    """Hashes a given number of bits apart: the pigeonhole bands find exactly the pairs a full comparison finds."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False))) for k in range(12)]
    phash = np.concatenate([base, [base[k] ^ flips[k] for k in range(12)]]).astype(np.uint64)
    dhash = phash.copy()
    found = duplicates._near_pairs(phash, dhash, 10_000)
    every = {(i, j) for i in range(len(phash)) for j in range(i + 1, len(phash))
             if int(np.bitwise_count(phash[i] ^ phash[j])) <= duplicates.PHASH_MAX_BITS
             and int(np.bitwise_count(dhash[i] ^ dhash[j])) <= duplicates.DHASH_MAX_BITS}
    assert found == every
    assert {(k, 40 + k) for k in range(duplicates.PHASH_MAX_BITS + 1)} <= found
    assert (11, 51) not in found


def test_label_balance_warns_under_a_fifth_and_names_the_fix() -> None:
    even = balance_finding({"a": 50, "b": 10}, "none")  # exactly a fifth: no warning
    assert even["warning"] is None
    assert SMALLEST_SHARE == 0.2
    skewed = balance_finding({"a": 50, "b": 9, "c": 30}, "none")
    assert skewed["smallest"] == {"label": "b", "images": 9}
    assert skewed["largest"] == {"label": "a", "images": 50}
    assert "'b' has 9 training images, 18% of the largest ('a', 50)" in skewed["warning"]
    assert "class_weights 'balanced'" in skewed["fix"]
    weighted = balance_finding({"a": 50, "b": 9, "c": 30}, "balanced")
    assert weighted["fix"] is None  # the fix is already applied
    assert weighted["weights"]["b"] > weighted["weights"]["c"] > weighted["weights"]["a"]
    tagged = balance_finding({"a": 50, "b": 9, "c": 30}, "none", multilabel=True)
    assert tagged["fix"] == "add images of 'b'."  # multi-label training takes no class weights


def test_class_weights_balanced_and_sqrt() -> None:
    counts = np.array([90, 10])
    assert class_weights("none", counts) is None
    balanced = class_weights("balanced", counts)
    np.testing.assert_allclose(balanced, [100 / (2 * 90), 100 / (2 * 10)])
    np.testing.assert_allclose(balanced * counts, [50, 50])  # each label weighs as much in total
    np.testing.assert_allclose(class_weights("sqrt", counts), np.sqrt(balanced))
    np.testing.assert_allclose(class_weights("balanced", np.array([4, 0, 4])), [1.0, 0.0, 1.0])


def test_class_weights_is_a_recipe_setting_that_reaches_the_loss(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="class_weights 'heavy' is not valid"):
        TrainConfig(data="x", class_weights="heavy")
    make_set(tmp_path / "data", {"red": 20, "blue": 5})
    recipe = TrainConfig(data=str(tmp_path / "data"), image_size=32, architecture="tiny", weights="none",
                         class_weights="balanced", batch_size=4, validation_fraction=0.2)
    data = prepare_data(recipe, tmp_path / "cache", MemoryReporter())
    loop, _ = build_loop(recipe, data, MemoryReporter(), Dist(), True, Budget())
    counts = np.bincount(data.train.targets)  # blue, red (labels sorted)
    # the weights apply over the last third of the epochs (deferred re-weighting), the first two unweighted
    first = reweight_from(loop.epochs)
    assert 0 < first < loop.epochs
    assert loop.criterion_at(first - 1).weight is None
    np.testing.assert_allclose(loop.criterion_at(first).weight.numpy(), counts.sum() / (2 * counts), rtol=1e-6)
    assert loop.criterion_at(loop.epochs - 1) is loop.criterion_at(first)
    plain, _ = build_loop(recipe.with_(class_weights="none"), data, MemoryReporter(), Dist(), True, Budget())
    assert all(plain.criterion_at(epoch).weight is None for epoch in range(plain.epochs))


def test_confident_learning_ranks_flipped_labels_first() -> None:
    """Three well separated clusters; 6 of 300 labels flipped: the suspects are exactly those, first."""
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 100)
    features = rng.normal(0, 1, (300, 8)) + np.eye(3, 8)[truth] * 6
    given = truth.copy()
    flipped = np.array([3, 50, 120, 170, 230, 290])
    given[flipped] = (truth[flipped] + 1) % 3
    probs = out_of_sample_probs(features, given, 3, seed=0)
    assert probs is not None
    ranked, quality = rank_suspects(probs, given)
    assert set(ranked.tolist()) == set(flipped.tolist())
    assert quality[flipped].max() < np.delete(quality, flipped).min()


def test_too_few_images_for_folds_gives_no_probabilities() -> None:
    assert out_of_sample_probs(np.zeros((5, 2)), np.array([0, 0, 0, 0, 1]), 2, seed=0) is None


def test_overfitting_warns_when_training_runs_far_ahead() -> None:
    assert overfitting_finding([]) is None
    close = overfitting_finding([{"epoch": 1, "train_accuracy": 0.8, "val_accuracy": 0.75, "partial": 0.0}])
    assert close["warning"] is None
    far = overfitting_finding([{"epoch": 1, "train_accuracy": 0.7, "val_accuracy": 0.6, "partial": 0.0},
                               {"epoch": 2, "train_accuracy": 0.99, "val_accuracy": 0.99 - OVERFIT_GAP - 0.01,
                                "partial": 0.0},
                               {"epoch": 3, "train_accuracy": 1.0, "val_accuracy": 0.5, "partial": 1.0}])
    assert far["epoch"] == 2  # the last whole epoch, not a partial one
    assert "learns its training images by heart" in far["warning"]
    assert far["fix"]


def test_a_training_keeps_its_predictions_thumbnails_and_finds_the_moved_images(tmp_path: Path) -> None:
    """Three images filed under the wrong colour: after a real tiny training they are the top suspects."""
    made = make_set(tmp_path / "data", {"red": 20, "blue": 20, "green": 20})
    moved = []
    for source, target, i in (("red", "blue", 0), ("blue", "green", 1), ("green", "red", 2)):
        moved.append(f"{target}/moved-{source}-{i}.png")
        made[source][i].rename(tmp_path / "data" / moved[-1])
    torch.manual_seed(0)
    recipe = TrainConfig.from_dict({"data": str(tmp_path / "data"), "architecture": "tiny", "weights": "none",
                                    "image_size": 32, "epochs": 3, "batch_size": 8, "name": "Colours"})
    result = run_training(recipe, tmp_path / "run", MemoryReporter(), cache_root=tmp_path / "cache", offline=True)

    report = json.loads((result.run_dir / DATA_REPORT_FILE).read_text())
    suspects = report["suspects"]
    assert suspects["checked_images"] == 60
    top = [row["path"] for row in suspects["suspects"][:len(moved)]]
    assert set(top) == set(moved), suspects["suspects"][:6]
    assert {row["likely_label"] for row in suspects["suspects"][:3]} == {"red", "blue", "green"}
    assert {line["topic"] for line in report["summary"]} >= {"balance", "duplicates", "conflicts", "leaks",
                                                             "suspects", "overfitting"}

    rows = read_predictions(result.run_dir / PREDICTIONS_FILE)
    assert len(rows) == result.metrics["num_images"]
    assert [r.index for r in rows] == list(range(len(rows)))
    assert all((tmp_path / "data" / r.path).is_file() for r in rows)
    assert all(0 <= r.true_score <= 1 and r.score >= r.true_score - 1e-6 for r in rows)
    cells = np.zeros((3, 3), dtype=int)
    labels = result.labels
    for r in rows:
        cells[labels.index(r.true_label), labels.index(r.predicted_label)] += 1
    assert cells.tolist() == result.metrics["confusion_matrix"]  # the rows are the matrix's images
    with zipfile.ZipFile(result.run_dir / THUMBNAILS_FILE) as archive:
        names = set(archive.namelist())
        first = Image.open(io.BytesIO(archive.read("predictions/0.jpg")))
    assert {f"predictions/{i}.jpg" for i in range(len(rows))} <= names
    assert {f"suspects/{i}.jpg" for i in range(len(suspects["suspects"]))} <= names
    assert first.format == "JPEG"
    assert max(first.size) <= 96


def test_with_a_head_phase_the_label_check_uses_the_frozen_backbones_features(tmp_path: Path) -> None:
    """The head phase's features of the (stand-in) pretrained backbone never saw a label: the check uses them,
    says so, and still finds the moved images."""
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    made = make_set(tmp_path / "data", {"red": 20, "blue": 20})
    made["red"][5].rename(tmp_path / "data" / "blue" / "moved.png")
    reporter = MemoryReporter()
    recipe = TrainConfig(data=str(tmp_path / "data"), architecture="resnet18", weights=str(weights), mode="head",
                         image_size=32, batch_size=8, head_epochs=15)
    result = run_training(recipe, tmp_path / "run", reporter, cache_root=tmp_path / "cache")
    suspects = json.loads((result.run_dir / DATA_REPORT_FILE).read_text())["suspects"]
    assert "pretrained backbone's features (frozen" in suspects["method"]
    assert suspects["suspects"][0]["path"] == "blue/moved.png"
    assert any("regression over the pretrained backbone's features" in m for m in reporter.messages())
