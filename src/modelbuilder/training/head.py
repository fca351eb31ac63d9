"""Head-only training: features of the frozen pretrained backbone computed once, then only the new
head is trained on them, in seconds.

This is how the reference system's local trainer works, and it wins whenever the backbone's ImageNet
features already separate the labels (photos of everyday things, few images): one forward pass per
image instead of a forward and a backward pass per image per epoch. It cannot adapt the features,
so on unusual images (digits, X-rays, satellite tiles) a full fine-tune goes further; `--mode auto`
does the head first and then a full fine-tune starting from it.

Features are cached on disk next to the decoded images, keyed by the images and by the backbone's
weights, so a second run on the same data skips straight to the head.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelbuilder.training import objective
from modelbuilder.training.loop import Loop, Split, eval_batches, stop_reason
from modelbuilder.training.recipe import MULTICLASS, MULTILABEL
from modelbuilder.training.reporter import Progress


def _features_key(split: Split, architecture: str, weights: str, image_size: int) -> str:
    h = hashlib.sha256(f"{split.cache.path.name}:{architecture}:{weights}:{image_size}:".encode())
    h.update(np.asarray(split.records, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


@torch.no_grad()
def extract_features(loop: Loop, split: Split, cache_root: Path, architecture: str, weights: str,
                     image_size: int, what: str) -> np.ndarray | str:
    """The head's inputs for every image of `split` (eval transform), from the cache when there; or why
    it stopped before the end (a cancel, a preemption, the time budget: see `loop.stop_reason`)."""
    path = cache_root / "features" / f"{_features_key(split, architecture, weights, image_size)}.npy"
    if path.is_file():
        return np.load(path)
    captured: list[torch.Tensor] = []
    hook = loop.model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0].float().cpu()))
    loop.model.eval()
    done, started = 0, time.perf_counter()
    try:
        for x, _ in eval_batches(loop, split):
            with loop.autocast():
                loop.model(x.to(loop.device))
            done += len(x)
            rate = done / max(time.perf_counter() - started, 1e-9)
            loop.reporter.progress(Progress("features", 0, 0, done, len(split), images_per_s=rate,
                                            eta_s=(len(split) - done) / rate))
            stop = stop_reason(loop)
            if stop:
                return stop
    finally:
        hook.remove()
    features = torch.cat(captured).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
    np.save(tmp, features)
    os.replace(tmp, path)
    loop.reporter.log(f"Computed backbone features of {len(split)} {what} images ({features.shape[1]} each) once; "
                      "later runs on the same data reuse them.")
    return features


def _one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One cycle over `steps` steps, warming up over 10% of them but at least one step (OneCycleLR ends its
    warm-up at step pct_start * steps - 1, and divides by zero where that is 0: 10 steps at 10%). Fewer than
    three steps leave no room for a warm-up and a decay: they run at `lr`."""
    if steps < 3:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                               pct_start=max(0.1, 2 / steps))


def train_head(head: nn.Linear, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
               epochs: int, lr: float, weight_decay: float, label_smoothing: float, seed: int,
               should_stop: Callable[[], str | None] = lambda: None,
               batch_size: int = 256, class_weights: torch.Tensor | None = None,
               ) -> tuple[list[dict[str, float]], str | None]:
    """Full-batch-ish AdamW on the cached features; keeps the epoch with the best validation accuracy.

    Returns the history and why it stopped early (`should_stop`, asked after every epoch), or None.
    `class_weights` weighs the loss by label (the recipe's class_weights).
    """
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.from_numpy(train_x), torch.from_numpy(train_y)
    vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
    head = head.to("cpu").float()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, -(-len(xs) // batch_size))
    scheduler = _one_cycle(optimizer, lr, steps)
    criterion = objective.criterion(MULTILABEL if ys.ndim == 2 else MULTICLASS, class_weights, label_smoothing)
    history: list[dict[str, float]] = []
    stopped: str | None = None
    best: tuple[float, float, dict[str, torch.Tensor] | None] = (-1.0, float("inf"), None)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(xs), generator=g)
        seen, loss_sum, correct, t0 = 0, 0.0, 0, time.perf_counter()
        for start in range(0, len(xs), batch_size):
            idx = order[start : start + batch_size]
            logits = head(xs[idx])
            loss = criterion(logits, ys[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen, loss_sum = seen + len(idx), loss_sum + loss.item() * len(idx)
            correct += int(objective.correct(logits, ys[idx]))
        with torch.no_grad():
            val_logits = head(vx)
            val_loss = float(objective.loss_sum(val_logits, vy)) / len(vy)
            val_acc = float(objective.correct(val_logits, vy)) / len(vy)
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "val_loss": val_loss, "val_accuracy": val_acc,
                        "images_per_s": seen / max(time.perf_counter() - t0, 1e-9),
                        "lr": optimizer.param_groups[0]["lr"], "partial": 0.0})
        if val_acc > best[0] or (val_acc == best[0] and val_loss < best[1]):
            best = (val_acc, val_loss, {k: v.clone() for k, v in head.state_dict().items()})
        stopped = should_stop()
        if stopped:
            break
    assert best[2] is not None
    head.load_state_dict(best[2])
    return history, stopped
