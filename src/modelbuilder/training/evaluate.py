"""Evaluation: the numbers a user judges a model by, and two pictures.

`classification_metrics` works on predicted probabilities and true labels as numpy arrays, so the same
function scores the PyTorch model during training and an ONNX model afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """rows = true label, columns = predicted label."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def classification_metrics(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Micro accuracy, macro accuracy, macro precision/recall/F1, log-loss, per-label table, confusion."""
    k = len(labels)
    predictions = probs.argmax(1)
    matrix = confusion_matrix(targets, predictions, k)
    support = matrix.sum(1)
    predicted = matrix.sum(0)
    tp = np.diag(matrix).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    eps = 1e-15
    log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(targets)), targets], eps, 1.0)))) if len(
        targets) else float("nan")
    return {
        "accuracy": float((predictions == targets).mean()) if len(targets) else 0.0,
        # macro accuracy = mean of the per-label recalls, over labels that have validation images
        "macro_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "log_loss": log_loss,
        "num_images": int(len(targets)),
        "per_label": [
            {"label": labels[i], "precision": float(precision[i]), "recall": float(recall[i]),
             "f1": float(f1[i]), "support": int(support[i])}
            for i in range(k)
        ],
        "confusion_matrix": matrix.tolist(),
        "labels": list(labels),
    }


def best_thresholds(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each label's threshold on its score that maximises its F1 on these images (0.5 for a label none of them
    carries, where F1 cannot be judged). The threshold sits halfway between the lowest score it accepts and
    the next score below, not on an image's own score, so rounding elsewhere (onnxruntime's float64 sigmoid)
    cannot flip that image."""
    chosen = np.full(probs.shape[1], 0.5)
    for k in range(probs.shape[1]):
        if targets[:, k].sum() == 0:
            continue
        precision, recall, cuts = precision_recall_curve(targets[:, k], probs[:, k])  # cuts: every score, rising
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                       where=(precision + recall) > 0)[:-1]  # the last point has no threshold
        best = int(np.argmax(f1))
        chosen[k] = float((cuts[best] + (cuts[best - 1] if best > 0 else 0.0)) / 2)
    return chosen


def multilabel_metrics(probs: np.ndarray, targets: np.ndarray, labels: list[str],
                       thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """Multi-label scores at per-label thresholds (default: those maximising each label's F1 here): subset
    accuracy (every label of an image right), micro and macro F1, mean average precision (threshold-free),
    per-label precision/recall/F1/AP, and the thresholds."""
    truth = targets > 0.5
    cuts = best_thresholds(probs, truth) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    predicted = probs >= cuts
    tp = (predicted & truth).sum(0).astype(np.float64)
    support, guessed = truth.sum(0), predicted.sum(0)
    precision = np.divide(tp, guessed, out=np.zeros(len(labels)), where=guessed > 0)
    recall = np.divide(tp, support, out=np.zeros(len(labels)), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(labels)),
                   where=(precision + recall) > 0)
    present = support > 0
    ap = np.array([average_precision_score(truth[:, k], probs[:, k]) if present[k] else 0.0
                   for k in range(len(labels))])
    micro_p = tp.sum() / max(guessed.sum(), 1)
    micro_r = tp.sum() / max(support.sum(), 1)
    eps = 1e-7
    clipped = np.clip(probs, eps, 1 - eps)
    return {
        "task": "multilabel",
        "accuracy": float((predicted == truth).all(1).mean()) if len(truth) else 0.0,  # subset accuracy
        "subset_accuracy": float((predicted == truth).all(1).mean()) if len(truth) else 0.0,
        "hamming_accuracy": float((predicted == truth).mean()) if len(truth) else 0.0,
        "micro_f1": float(2 * micro_p * micro_r / (micro_p + micro_r)) if micro_p + micro_r > 0 else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "mean_average_precision": float(ap[present].mean()) if present.any() else 0.0,
        "log_loss": float(-np.mean(truth * np.log(clipped) + ~truth * np.log(1 - clipped))) if len(truth) else
        float("nan"),
        "num_images": int(len(truth)),
        "thresholds": {labels[k]: round(float(cuts[k]), 6) for k in range(len(labels))},
        "per_label": [
            {"label": labels[k], "threshold": round(float(cuts[k]), 6), "precision": float(precision[k]),
             "recall": float(recall[k]), "f1": float(f1[k]), "average_precision": float(ap[k]),
             "support": int(support[k])}
            for k in range(len(labels))
        ],
        "labels": list(labels),
    }


def plot_confusion_matrix(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    k = len(labels)
    side = min(2 + 0.5 * k, 16)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix (validation)")
    if k <= 30:
        top = matrix.max() or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_training_curves(history: list[dict[str, float]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    left.set_title("loss")
    right.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    right.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="validation")
    right.set_title("accuracy")
    right.set_ylim(0, 1.02)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
