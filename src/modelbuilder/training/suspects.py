"""After training: images whose label is likely wrong, and whether the model learned its training images
by heart.

Likely wrong labels come from confident learning (`cleanlab.filter.find_label_issues`), which needs
out-of-sample predicted probabilities: for each image, a prediction from a model that did not train on
that image's label. Training the network K times (K-fold) would cost K trainings. Instead, the trained
network's penultimate features of every image (training and validation, eval transform) go to a
logistic regression fitted K-fold (scikit-learn's `cross_val_predict`), so each image's probabilities
come from a classifier that never saw its label. Fine-tuned features were themselves shaped by the
training labels, which can pull a mislabelled training image towards its wrong label and hide it; where
the run had a head phase, the pretrained backbone's features it computed (frozen, label-free, already
cached) are used instead. Either way it costs at most one forward pass over the training images and a
few seconds of fitting, not K trainings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelbuilder.results.files import DATA_REPORT_FILE, PREDICTIONS_FILE, THUMBNAILS_FILE
from modelbuilder.training.loop import Loop, Split, eval_batches
from modelbuilder.training.predictions import (
    multilabel_predictions_of,
    predictions_of,
    write_predictions,
    write_thumbnails,
)
from modelbuilder.training.prepare import PreparedData
from modelbuilder.training.reporter import Reporter

FOLDS = 5
COMPONENTS = 128  # the features' principal components the regression sees. On ResNet50's 2,048 features L-BFGS
#                   took about 470 iterations a fold, 43 s of a trashnet run's export; on 128 components Newton's
#                   method (newton-cholesky) converges in a few: the check took 6.8 s there, forward pass included
SUSPECTS_KEPT = 200  # the most suspects listed (and given thumbnails); all are counted
OVERFIT_GAP = 0.15  # warn when training accuracy is this far ahead of validation accuracy
TRAINED = "the trained network's penultimate features"
FROZEN = "the pretrained backbone's features (frozen in the head phase: they never saw the labels)"
MULTILABEL_NOT_CHECKED = ("not checked: the check is for multi-class runs, whose images have one label each; "
                          "see each label's missed images and false alarms in its gallery instead")


@torch.no_grad()
def penultimate_features(loop: Loop, split: Split) -> np.ndarray:
    """The head's inputs for every image of `split`, with the eval transform."""
    loop.model.eval()
    with head_inputs(loop) as captured:
        for x, _ in eval_batches(loop, split):
            with loop.autocast():
                loop.model(x.to(loop.device))
    return torch.cat(captured).numpy()


def out_of_sample_probs(features: np.ndarray, targets: np.ndarray, num_labels: int, seed: int) -> np.ndarray | None:
    """Each image's label probabilities from a logistic regression fitted on the other folds; None when a
    label has too few images for two folds."""
    counts = np.bincount(targets, minlength=num_labels)
    folds = int(min(FOLDS, counts.min()))
    if folds < 2:
        return None
    components = min(COMPONENTS, features.shape[1], len(features) - len(features) // folds - 1)
    model = make_pipeline(StandardScaler(), PCA(n_components=components, random_state=seed),
                          LogisticRegression(C=0.1, solver="newton-cholesky", max_iter=100))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(model, features, targets, cv=cv, method="predict_proba"))


def rank_suspects(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the likely wrongly labelled images, most likely first, and every image's label quality
    (the out-of-sample probability of its given label)."""
    quality = get_label_quality_scores(targets, probs, method="self_confidence")
    # n_jobs=1: cleanlab's process pool shares its inputs through module globals, which only a fork start
    # shows the children; a worker started from the fork server gets a NameError from every child.
    issues = find_label_issues(targets, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(issues, dtype=np.int64), quality


def suspects_finding(images: Sequence[Any], targets: np.ndarray, probs: np.ndarray | None,
                     labels: Sequence[str], features: str = TRAINED) -> tuple[dict[str, Any], np.ndarray]:
    """The report's `suspects` section (the kept ones in rank order, each with its given and likely label)
    and the positions in `images` of the kept suspects."""
    if probs is None:
        return {"checked_images": len(images), "count": 0, "suspects": [],
                "note": f"not checked: a label has fewer than 2 images (needs {FOLDS} for a {FOLDS}-fold check)"}, \
            np.zeros(0, dtype=np.int64)
    ranked, quality = rank_suspects(probs, targets)
    kept = ranked[:SUSPECTS_KEPT]
    rows = [{"rank": rank, "path": images[i].path, "split": images[i].split, "label": labels[int(targets[i])],
             "likely_label": labels[int(probs[i].argmax())], "label_quality": round(float(quality[i]), 4),
             "likely_score": round(float(probs[i].max()), 4)} for rank, i in enumerate(kept)]
    return {"checked_images": len(images), "count": len(ranked), "suspects": rows,
            "method": f"cleanlab confident learning on {len(probs[0])}-label probabilities of a {FOLDS}-fold "
                      f"logistic regression over {features}"}, kept


def overfitting_finding(history: Sequence[dict[str, float]]) -> dict[str, Any] | None:
    """The report's `overfitting` section from the last whole epoch: a warning when training accuracy is
    OVERFIT_GAP or more ahead of validation accuracy; None before any epoch ended."""
    whole = [h for h in history if not h.get("partial")]
    if not whole:
        return None
    last = whole[-1]
    gap = float(last["train_accuracy"]) - float(last["val_accuracy"])
    warning = fix = None
    if gap >= OVERFIT_GAP:
        warning = (f"Training accuracy ({last['train_accuracy']:.3f}) runs {gap:.3f} ahead of validation accuracy "
                   f"({last['val_accuracy']:.3f}) at epoch {int(last['epoch'])}: the model learns its training "
                   "images by heart.")
        fix = ("add images, augment more (mixup_alpha, cutmix_alpha, crop_scale_min), train fewer epochs, "
               "or use pretrained weights or a smaller architecture.")
    return {"epoch": int(last["epoch"]), "train_accuracy": round(float(last["train_accuracy"]), 4),
            "val_accuracy": round(float(last["val_accuracy"]), 4), "gap": round(gap, 4), "threshold": OVERFIT_GAP,
            "warning": warning, "fix": fix}


@contextmanager
def head_inputs(loop: Loop) -> Iterator[list[torch.Tensor]]:
    """Collects the head's inputs (the penultimate features) of every forward pass inside the block."""
    captured: list[torch.Tensor] = []
    hook = loop.model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0].float().cpu()))
    try:
        yield captured
    finally:
        hook.remove()


def review(loop: Loop, data: PreparedData, val_probs: np.ndarray, val_features: np.ndarray,
           history: Sequence[dict[str, float]], run_dir: Path, seed: int, reporter: Reporter,
           frozen: Sequence[np.ndarray] | None = None, thresholds: Sequence[float] | None = None) -> None:
    """After training, with the best weights loaded: predictions.csv, the likely wrong labels and the
    overfitting check in data_report.json, and thumbnails.zip for the portal's galleries.

    The label check uses `frozen` (the pretrained backbone's features of the training and validation
    images, from the head phase) where there are some: they owe nothing to the labels. Otherwise it uses
    the trained network's penultimate features (`val_features` came with the final evaluation).
    A multi-label run (`thresholds`: its exported per-label thresholds) gets its predictions and thumbnails
    but no label check: confident learning needs one given label per image to doubt."""
    paths = [image.path for image in data.val_images]
    if thresholds is not None:
        rows = multilabel_predictions_of(paths, data.val.targets, val_probs, data.labels, thresholds)
    else:
        rows = predictions_of(paths, data.val.targets, val_probs, data.labels)
    write_predictions(run_dir / PREDICTIONS_FILE, rows)
    validation = [(data.val.cache, int(r)) for r in data.val.records]
    if thresholds is not None:
        data.report.suspects = {"checked_images": 0, "count": 0, "suspects": [], "note": MULTILABEL_NOT_CHECKED}
        data.report.overfitting = overfitting_finding(history)
        (run_dir / DATA_REPORT_FILE).write_text(json.dumps(data.report.to_dict(), indent=2))
        write_thumbnails(run_dir / THUMBNAILS_FILE, {"predictions": validation, "suspects": []})
        return
    reporter.log(f"Checking the labels of {len(data.train) + len(data.val)} images ({FOLDS}-fold logistic "
                 f"regression over {FROZEN if frozen is not None else TRAINED}).")
    if frozen is not None:
        features = np.concatenate(list(frozen))
    else:
        features = np.concatenate([penultimate_features(loop, data.train), val_features])
    targets = np.concatenate([data.train.targets, data.val.targets])
    images = data.train_images + data.val_images
    probs = out_of_sample_probs(features, targets, len(data.labels), seed)
    data.report.suspects, kept = suspects_finding(images, targets, probs, data.labels,
                                                  FROZEN if frozen is not None else TRAINED)
    data.report.overfitting = overfitting_finding(history)
    (run_dir / DATA_REPORT_FILE).write_text(json.dumps(data.report.to_dict(), indent=2))
    n = len(data.train)
    where = [(data.train.cache, int(data.train.records[i])) if i < n else (data.val.cache, int(data.val.records[i - n]))
             for i in kept]
    write_thumbnails(run_dir / THUMBNAILS_FILE, {"predictions": validation, "suspects": where})
    for line in data.report.summary():
        if line["topic"] in ("suspects", "overfitting"):
            reporter.log(line["text"], "warning" if line["level"] == "warning" else "info")
