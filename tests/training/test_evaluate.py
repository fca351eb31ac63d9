"""training/evaluate.py: the numbers a model is judged by, checked by hand on small cases, and its two plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelbuilder.training.evaluate import (
    classification_metrics,
    confusion_matrix,
    plot_confusion_matrix,
    plot_training_curves,
)


def test_the_confusion_matrix_counts_true_labels_by_row() -> None:
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_metrics_by_hand() -> None:
    # 4 cats (3 right), 2 dogs (1 right, 1 taken for a cat): accuracy 4/6.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    targets = np.array([0, 0, 0, 0, 1, 1])
    m = classification_metrics(probs, targets, ["cat", "dog"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    cat_recall, dog_recall = 3 / 4, 1 / 2
    cat_precision, dog_precision = 3 / 4, 1 / 2
    assert m["macro_accuracy"] == pytest.approx((cat_recall + dog_recall) / 2)
    assert m["macro_precision"] == pytest.approx((cat_precision + dog_precision) / 2)
    f1 = [2 * p * r / (p + r) for p, r in ((cat_precision, cat_recall), (dog_precision, dog_recall))]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 2)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.6, 0.3, 0.8, 0.3])))
    assert m["confusion_matrix"] == [[3, 1], [1, 1]]
    assert [row["support"] for row in m["per_label"]] == [4, 2]
    assert m["num_images"] == 6


def test_a_label_without_validation_images_is_left_out_of_the_macro_averages() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    m = classification_metrics(probs, np.array([0, 1]), ["cat", "dog", "fox"])
    assert m["macro_accuracy"] == 1.0  # fox has no images: it neither helps nor hurts
    assert m["per_label"][2] == {"label": "fox", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_no_images_give_zeros_and_an_unknown_loss() -> None:
    m = classification_metrics(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), ["cat", "dog"])
    assert (m["accuracy"], m["macro_f1"], m["num_images"]) == (0.0, 0.0, 0)
    assert math.isnan(m["log_loss"])


def test_the_plots_are_images(tmp_path: Path) -> None:
    plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["cat", "dog"], tmp_path / "cm.png")
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5 + e / 10,
                "val_accuracy": 0.4 + e / 10} for e in (1, 2, 3)]
    plot_training_curves(history, tmp_path / "curves.png")
    with Image.open(tmp_path / "cm.png") as cm, Image.open(tmp_path / "curves.png") as curves:
        assert cm.format == curves.format == "PNG"
        assert curves.width > curves.height  # loss and accuracy side by side
