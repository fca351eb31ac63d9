"""Label balance: the data report's warning when one label has far fewer images than another, and the
loss weights of the recipe's `class_weights` that answer it.

`balanced` weighs each label by N / (K * n_label), so every label carries the same total weight in the
loss (scikit-learn's "balanced"; Azure's weighted loss 2); `sqrt` takes the square root of those
weights, a milder correction (Azure's 1); `none` leaves the loss as it is (Azure's 0).

The weights apply over the last third of the epochs only (deferred re-weighting, Cao et al., "Learning
Imbalanced Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019): the features are learned
from every image as it comes, then the weights move the decision between labels. Weighting from the
first step bought the smallest label's recall with overall accuracy (docs/RECIPE.md has the figures).
"""

from __future__ import annotations

from typing import Any

import numpy as np

REWEIGHT_FROM = 2 / 3  # the share of the epochs trained unweighted before the class weights apply
SMALLEST_SHARE = 0.2  # warn when the smallest label has fewer than this share of the largest label's images


def class_weights(kind: str, counts: np.ndarray) -> np.ndarray | None:
    """The loss weight of every label for the recipe's `class_weights`, from the training images per label;
    None for `none`. A label without training images gets weight 0 (it has nothing to weigh)."""
    if kind == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return np.sqrt(weights) if kind == "sqrt" else weights


def reweight_from(epochs: int) -> int:
    """The first epoch (0-based) whose loss carries the class weights: the last third of `epochs`."""
    return min(epochs - 1, int(epochs * REWEIGHT_FROM))


def balance_finding(per_label: dict[str, int], kind: str, multilabel: bool = False) -> dict[str, Any]:
    """The report's `balance` section: the smallest and largest labels, their ratio, and a warning with the
    fix when the smallest has under SMALLEST_SHARE of the largest (multi-label training weighs no labels:
    its fix is more images)."""
    smallest = min(per_label, key=lambda label: (per_label[label], label))
    largest = max(per_label, key=lambda label: (per_label[label], label))
    ratio = per_label[smallest] / per_label[largest] if per_label[largest] else 1.0
    warning = None
    if ratio < SMALLEST_SHARE:
        warning = (f"The smallest label {smallest!r} has {per_label[smallest]} training images, "
                   f"{ratio:.0%} of the largest ({largest!r}, {per_label[largest]}).")
    fix = None
    if warning and multilabel:
        fix = f"add images of {smallest!r}."
    elif warning and kind == "none":
        fix = (f"weigh the loss by label (class_weights 'balanced', or 'sqrt' for a milder weighting), "
               f"or add images of {smallest!r}.")
    weights = class_weights(kind, np.array(list(per_label.values())))
    return {"smallest": {"label": smallest, "images": per_label[smallest]},
            "largest": {"label": largest, "images": per_label[largest]},
            "ratio": round(ratio, 4), "warning": warning, "fix": fix, "class_weights": kind,
            "weights": dict(zip(per_label, [round(float(w), 4) for w in weights], strict=True))
            if weights is not None else None}
