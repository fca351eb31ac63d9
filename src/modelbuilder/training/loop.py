"""The train/eval loop: plain functions, everything they use passed in as arguments.

`fit` runs epochs of `train_one_epoch` + `evaluate`, keeps the best epoch's weights (not the last),
writes an atomic checkpoint every epoch, stops early when validation accuracy stops improving, stops
cleanly at the time budget, and on a cancel or a preemption stops within one step.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelbuilder.results.files import BEST_CHECKPOINT, CHECKPOINT_DIR
from modelbuilder.training import objective
from modelbuilder.training.balance import reweight_from
from modelbuilder.training.cache import DecodedCache
from modelbuilder.training.checkpoint import TrainState, atomic_save, restore_rng, save_checkpoint
from modelbuilder.training.distributed import CONTINUE, STOP_CODES, STOP_NAMES, Dist
from modelbuilder.training.model import Classifier
from modelbuilder.training.presets import (
    ClassificationPresetEval,
    ClassificationPresetTrain,
    MixBatch,
    batch_generator,
    epoch_order,
)
from modelbuilder.training.reporter import Progress, Reporter

EVAL_BATCH_IMAGES = 128


class Preempted(Exception):
    """Training stopped for a preemption after writing a checkpoint at the current step (None: before
    anything worth a checkpoint, such as in the head phase, so the next attempt starts over)."""

    def __init__(self, checkpoint: Path | None, epoch: int, step: int) -> None:
        super().__init__(f"preempted at epoch {epoch + 1}, step {step}; checkpoint {checkpoint or 'none'}")
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


@dataclass(frozen=True)
class Split:
    """Some images of the decoded cache: their record numbers and their label indices."""

    cache: DecodedCache
    records: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class Budget:
    """A clock and the moment on it by which training must stop (None: no time budget).

    Every reading of time for the budget goes through `clock`, so a test can hand the loop its own.
    """

    clock: Callable[[], float] = time.monotonic
    stop_at: float | None = None

    def over(self) -> bool:
        return self.stop_at is not None and self.clock() >= self.stop_at


@dataclass(frozen=True)
class Loop:
    """The fixed parts of one training: what every function below is handed."""

    model: Classifier
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    train_preset: ClassificationPresetTrain
    eval_preset: ClassificationPresetEval
    batch_size: int
    seed: int
    epochs: int
    reporter: Reporter
    budget: Budget = field(default_factory=Budget)
    dist: Dist = field(default_factory=Dist)
    train_model: nn.Module | None = None  # the DistributedDataParallel wrapper when data-parallel
    mix: MixBatch | None = None  # MixUp / CutMix of training batches
    ema: torch.optim.swa_utils.AveragedModel | None = None  # a moving average of the weights, evaluated
    reweighted: nn.Module | None = None  # the loss with class weights, from `reweight_from(epochs)` on

    @property
    def trained(self) -> nn.Module:
        """What training steps run through (DDP all-reduces the gradients); evaluation uses `evaluated`."""
        return self.train_model if self.train_model is not None else self.model

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are evaluated, kept as the best and exported: the average where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def criterion_at(self, epoch: int) -> nn.Module:
        """The loss of `epoch`: the class-weighted one over the last epochs (deferred re-weighting)."""
        if self.reweighted is not None and epoch >= reweight_from(self.epochs):
            return self.reweighted
        return self.criterion

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


@dataclass(frozen=True)
class FitResult:
    state: TrainState
    stopped: str  # "completed" | "early_stopping" | "time_budget" | "cancel"
    best_weights: Path


def steps_per_epoch(n: int, batch_size: int) -> int:
    # A last batch of one image is dropped: BatchNorm cannot normalise a single 1x1 activation.
    return max(1, n // batch_size + (1 if n % batch_size > 1 else 0))


def _prefetch(batches: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Produce batches in a background thread (reads and crops release the GIL) while the model runs."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done, closed = object(), threading.Event()

    def put(item: Any) -> None:
        while not closed.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in batches:
                put(item)
                if closed.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer and raised there
            put(exc)
        put(done)

    threading.Thread(target=produce, daemon=True).start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        closed.set()  # the consumer stopped early (cancel, budget): let the producer end


def train_batches(loop: Loop, split: Split, epoch: int, start_step: int) -> Iterator[tuple[int, Any, Any, Any]]:
    """This rank's share of each global batch: the same global batches as a single process sees.

    Yields (step, images, labels, soft targets or None where batches are not mixed)."""
    order = epoch_order(len(split), loop.seed, epoch)
    buffer = None
    for step in range(start_step, steps_per_epoch(len(split), loop.batch_size)):
        chosen = order[step * loop.batch_size : (step + 1) * loop.batch_size]
        mine = loop.dist.shard(chosen)
        buffer = split.cache.read(split.records[mine], out=buffer)
        x = loop.train_preset(torch.from_numpy(buffer), batch_generator(loop.seed, epoch, step), loop.channels_last,
                              shard=(loop.dist.rank, loop.dist.world), total=len(chosen))
        y = torch.from_numpy(split.targets[mine])
        soft = None
        if loop.mix:
            x, soft = loop.mix(x, y, batch_generator(loop.seed, epoch, step, stream=1))
        if loop.device.type == "cuda":  # pinned in the prefetch thread, so the copy to the GPU is asynchronous
            x, y = x.pin_memory(), y.pin_memory()
            soft = soft.pin_memory() if soft is not None else None
        yield step, x, y, soft


def train_step(loop: Loop, x: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None,
               epoch: int = 0) -> tuple[Any, Any, Any]:
    """One optimizer step on a batch of `epoch`: forward under autocast, loss, backward, step, schedule,
    average. Returns (loss, logits, labels) on the device."""
    x, y = x.to(loop.device, non_blocking=True), y.to(loop.device, non_blocking=True)
    target = y if soft is None else soft.to(loop.device, non_blocking=True)
    with loop.autocast():
        logits = loop.trained(x)
        loss = loop.criterion_at(epoch)(logits.float(), target)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    loop.optimizer.step()
    loop.scheduler.step()
    if loop.ema is not None:
        loop.ema.update_parameters(loop.model)
    return loss, logits, y


def eval_batch_size(loop: Loop) -> int:
    """Forward passes without gradients run faster in larger batches than the training step's."""
    return max(loop.batch_size, EVAL_BATCH_IMAGES)


def eval_batches(loop: Loop, split: Split, limit: int | None = None) -> Iterator[tuple[Any, Any]]:
    n = len(split) if limit is None else min(limit, len(split))
    size = eval_batch_size(loop)
    for start in range(0, n, size):
        records = split.records[start : min(n, start + size)]
        x = loop.eval_preset(torch.from_numpy(split.cache.read(records)), loop.channels_last)
        yield x, torch.from_numpy(split.targets[start : start + len(records)])


def sample(split: Split, images: int, seed: int) -> Split:
    """A seeded random sample of `images` of `split`, the same whatever order the split is stored in.

    Splits are stored sorted by label: the first images would all come from the first labels.
    """
    canonical = np.argsort(split.records, kind="stable")
    chosen = canonical[np.sort(np.random.default_rng([seed, 0x42A]).permutation(len(split))[:images])]
    return Split(split.cache, split.records[chosen], split.targets[chosen])


def train_one_epoch(loop: Loop, split: Split, state: TrainState) -> str | None:
    """Train one epoch from `state.step`; returns why it stopped early, or None.

    Every rank keeps running sums of its own share; rank 0 reports, and decides (for all ranks, one
    broadcast per step) whether to stop for a cancel, a preemption or the time budget.
    """
    loop.trained.train()
    epoch, steps = state.epoch, steps_per_epoch(len(split), loop.batch_size)
    sums = state.partial or {"loss": 0.0, "correct": 0.0, "images": 0.0, "seconds": 0.0}
    for step, x, y, soft in _prefetch(train_batches(loop, split, epoch, state.step)):
        t0 = time.perf_counter()
        loss, logits, y = train_step(loop, x, y, soft, epoch)
        sums["loss"] += loss.item() * len(y)
        sums["correct"] += objective.correct(logits, y).item()
        sums["images"] += len(y)
        sums["seconds"] += time.perf_counter() - t0
        state.step, state.partial = step + 1, sums
        code = CONTINUE
        if loop.dist.main:
            rate = loop.dist.world * sums["images"] / max(sums["seconds"], 1e-9)
            left = (steps - step - 1 + (loop.epochs - epoch - 1) * steps) * loop.batch_size / rate
            loop.reporter.progress(Progress("training", epoch + 1, loop.epochs, step + 1, steps,
                                            sums["loss"] / sums["images"], sums["correct"] / sums["images"],
                                            rate, left))
            stop = stop_reason(loop)
            code = STOP_NAMES[stop] if stop else CONTINUE
        code = loop.dist.decide(code)
        if code != CONTINUE:
            return STOP_CODES[code]
    return None


def stop_reason(loop: Loop) -> str | None:
    """Why training must stop now: "cancel" or "preempt" (asked through the reporter), "time_budget", or None."""
    return loop.reporter.should_stop() or ("time_budget" if loop.budget.over() else None)


def _epoch_sums(loop: Loop, state: TrainState) -> dict[str, float]:
    """The epoch's sums over every rank (seconds: the slowest rank's)."""
    keys = ("loss", "correct", "images")
    total = dict(zip(keys, loop.dist.sum([state.partial[k] for k in keys]), strict=True))
    total["seconds"] = state.partial["seconds"]
    return total


@torch.no_grad()
def recalibrate_batchnorm(loop: Loop, split: Split, images: int) -> None:
    """Re-estimate BatchNorm statistics with the current weights (cumulative average, not EMA), on a
    seeded sample of `images` training images drawn across the whole split.

    With few steps per epoch the running statistics lag far behind weights that still move fast, and
    evaluation then looks much worse than the model is. Exact statistics over a fixed set of training
    images fix that at the cost of a forward pass over them.
    """
    norms = [m for m in loop.evaluated.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or images <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    loop.evaluated.train()
    with loop.autocast():
        for x, _ in eval_batches(loop, sample(split, images, loop.seed)):
            if len(x) > 1:
                loop.evaluated(x.to(loop.device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


@torch.no_grad()
def evaluate(loop: Loop, split: Split) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, probabilities) on `split` (multi-label: subset accuracy, a sigmoid per label)."""
    loop.evaluated.eval()
    losses, probs, right = [], [], 0
    for x, y in eval_batches(loop, split):
        with loop.autocast():
            logits = loop.evaluated(x.to(loop.device)).float()
        y = y.to(loop.device)
        losses.append(objective.loss_sum(logits, y).item())
        right += int(objective.correct(logits, y))
        probs.append(objective.probabilities(logits, y.ndim == 2).cpu().numpy())
    return sum(losses) / len(split), right / len(split), np.concatenate(probs)


def fit(loop: Loop, train: Split, val: Split, state: TrainState, run_dir: Path, recipe: dict[str, Any],
        labels: list[str], bn_images: int, patience: int) -> FitResult:
    """Epochs until done, early stopping, the budget, a cancel or a preemption.

    Only rank 0 evaluates, keeps the best weights and writes checkpoints; its decisions are shared.
    """
    ckpt_dir = run_dir / CHECKPOINT_DIR
    best_path, last_path = run_dir / BEST_CHECKPOINT, ckpt_dir / "last.pt"
    main = loop.dist.main
    stopped = "completed"
    while state.epoch < loop.epochs:
        started = loop.budget.clock()
        stop = train_one_epoch(loop, train, state)
        state.elapsed_s += loop.budget.clock() - started
        total = _epoch_sums(loop, state)  # a collective: every rank takes part
        state.partial = total if main else dict.fromkeys(total, 0.0)
        if stop == "preempt":
            if main:
                save_checkpoint(last_path, model=loop.model, optimizer=loop.optimizer, scheduler=loop.scheduler,
                                state=state, recipe=recipe, labels=labels, ema=loop.ema)
            loop.dist.barrier()
            raise Preempted(last_path, state.epoch, state.step)
        decision: tuple[bool, bool] = (False, False)
        if main:
            decision = _end_epoch(loop, train, val, state, stop, bn_images, patience, best_path, last_path,
                                  recipe, labels)
        _, early = loop.dist.share(decision)
        state.epoch, state.step, state.partial = state.epoch + 1, 0, {}
        loop.reporter.checkpoint(last_path, state.epoch, 0)
        if stop:
            stopped = stop
            break
        if early and state.epoch < loop.epochs:  # at the last epoch the schedule simply completed
            stopped = "early_stopping"
            break
    return FitResult(state, stopped, best_path)


def _end_epoch(loop: Loop, train: Split, val: Split, state: TrainState, stop: str | None, bn_images: int,
               patience: int, best_path: Path, last_path: Path, recipe: dict[str, Any],
               labels: list[str]) -> tuple[bool, bool]:
    """Rank 0 at the end of an epoch: evaluate, keep the best, checkpoint, report. -> (improved, early stop)."""
    loop.reporter.progress(Progress("evaluating", state.epoch + 1, loop.epochs, state.step, state.step))
    started = loop.budget.clock()
    recalibrate_batchnorm(loop, train, bn_images)
    val_loss, val_acc, _ = evaluate(loop, val)
    state.elapsed_s += loop.budget.clock() - started  # the budget counts evaluation too
    sums = state.partial
    record = {"epoch": state.epoch + 1, "train_loss": sums["loss"] / sums["images"],
              "train_accuracy": sums["correct"] / sums["images"], "val_loss": val_loss,
              "val_accuracy": val_acc, "images_per_s": sums["images"] / max(sums["seconds"], 1e-9),
              "lr": loop.optimizer.param_groups[-1]["lr"], "partial": float(stop is not None)}
    improved = state.improved_by(val_acc, val_loss)
    if improved:
        state.best_accuracy, state.best_loss, state.best_epoch = val_acc, val_loss, state.epoch + 1
        state.epochs_without_improvement = 0
        atomic_save({"model": loop.evaluated.state_dict(), "epoch": state.epoch + 1, "metrics": record,
                     "labels": labels, "recipe": recipe}, best_path)  # labels, recipe: to start a later run from
    else:
        state.epochs_without_improvement += 1
    state.history.append(record)
    done = TrainState(**{**state.__dict__, "epoch": state.epoch + 1, "step": 0, "partial": {}})
    save_checkpoint(last_path, model=loop.model, optimizer=loop.optimizer, scheduler=loop.scheduler,
                    state=done, recipe=recipe, labels=labels, ema=loop.ema)
    loop.reporter.metrics(state.epoch + 1, {k: v for k, v in record.items() if k not in ("epoch", "partial")})
    early = state.epochs_without_improvement >= patience
    if early and not stop:
        loop.reporter.log(f"Early stopping: validation accuracy has not improved for {patience} epochs "
                          f"(best {state.best_accuracy:.4f} at epoch {state.best_epoch}).")
    return improved, early


def warmup_cosine(total_steps: int, warmup_steps: int) -> Any:
    """LR multiplier: linear warm-up, then cosine decay to zero at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def resume_state(checkpoint: dict[str, Any], loop: Loop) -> TrainState:
    loop.model.load_state_dict(checkpoint["model"])
    if loop.ema is not None:
        loop.ema.load_state_dict(checkpoint["ema"])
    loop.optimizer.load_state_dict(checkpoint["optimizer"])
    loop.scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng(checkpoint["rng"])
    state = TrainState(**checkpoint["state"])
    if not loop.dist.main and state.partial:
        # The checkpoint holds the partial epoch's sums over all ranks; rank 0 carries them on.
        state.partial = dict.fromkeys(state.partial, 0.0)
    return state
