"""What the network is trained to output, per task: multi-class (one label per image: softmax, cross-entropy)
or multi-label (any number of labels per image: a sigmoid per label, binary cross-entropy).

The targets tell the two apart everywhere they meet: label indices (1-D) for multi-class, rows of 0/1 with a
column per label (2-D) for multi-label. "Accuracy" of a multi-label batch is its subset accuracy (every label
of the image right, at the 0.5 threshold); the thresholds a model is exported with are chosen after training
(`evaluate.multilabel_metrics`).
"""

from __future__ import annotations

import torch
from torch import nn

from modelbuilder.training.recipe import MULTILABEL


def criterion(task: str, weights: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    if task == MULTILABEL:
        return nn.BCEWithLogitsLoss()
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)


def correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many images of the batch are classified right (multi-label: all their labels, at 0.5)."""
    if targets.ndim == 2:
        return ((logits > 0) == (targets > 0.5)).all(1).sum()
    return (logits.argmax(1) == targets).sum()


def loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The unweighted, unsmoothed loss summed over the batch (multi-label: averaged over the labels of each
    image), which evaluation reports."""
    if targets.ndim == 2:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).sum()
    return nn.functional.cross_entropy(logits, targets, reduction="sum")


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return logits.sigmoid() if multilabel else logits.softmax(1)
