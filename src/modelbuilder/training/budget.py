"""The time budget: how many epochs fit in it, and when training must stop to leave time for the export.

Model Builder's one knob is training time. Cutting a schedule at the deadline leaves the learning rate
high and the model worse than a shorter schedule that runs to its end, so when a budget is given
without a number of epochs, `plan_epochs` measures what an epoch costs on this machine (a few real
training steps, then restored, and a few evaluation batches) and sets the epochs so that the whole
schedule, with its evaluations and the export after it, ends within the budget. The deadline
(`Budget.over`) stays as a guard for a plan that was too hopeful and for a budget given with a number
of epochs, which is then the user's cap.

Every reading of time goes through `Budget.clock`, so tests can hand it a clock of their own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelbuilder.training.checkpoint import atomic_save, restore_rng, rng_states
from modelbuilder.training.loop import Loop, Split, eval_batch_size, eval_batches, train_batches, train_step

MAX_PLANNED_EPOCHS = 100  # beyond this a longer schedule stops paying; early stopping ends it sooner anyway
PROBE_STEPS = 4  # timed training steps, after one untimed step that pays for allocations and kernel choice
EXPORT_FIXED_S = 10.0  # ONNX export + checks + MLModel.zip + generated projects, before the forward passes
EXPORT_CHECK_IMAGES = 64 * 3  # verify_onnx and the final evaluation's forward passes, in images, roughly
CHECKPOINTS_PER_EPOCH = 2  # last.pt every epoch, best.pt when it improved
PLAN_MARGIN = 0.05  # of the budget, kept for what is not measured (reports, store writes, a busier machine)


@dataclass(frozen=True)
class Costs:
    """What this machine measured: seconds per training step, images per second of evaluation, and the
    seconds a checkpoint takes to write (a ResNet50's weights and optimizer state are about 300 MB)."""

    step_s: float
    eval_images_per_s: float
    checkpoint_s: float = 0.0
    review_images: int = 0  # images the data review after training runs through the model (the training split)

    def epoch_s(self, steps: int, eval_images: int) -> float:
        return (steps * self.step_s + eval_images / self.eval_images_per_s
                + CHECKPOINTS_PER_EPOCH * self.checkpoint_s)

    def export_s(self) -> float:
        return EXPORT_FIXED_S + (EXPORT_CHECK_IMAGES + self.review_images) / self.eval_images_per_s


def epochs_that_fit(costs: Costs, seconds: float, steps: int, eval_images: int) -> int:
    """The most whole epochs (at least 1, at most MAX_PLANNED_EPOCHS) whose training, evaluation and the
    export after them fit in `seconds`."""
    usable = seconds * (1 - PLAN_MARGIN) - costs.export_s()
    return max(1, min(MAX_PLANNED_EPOCHS, int(usable // costs.epoch_s(steps, eval_images))))


def describe(costs: Costs, epochs: int, seconds: float, steps: int, eval_images: int) -> str:
    return (f"Time budget: an epoch takes about {costs.epoch_s(steps, eval_images):.1f} s here "
            f"({steps} steps of {costs.step_s * 1000:.0f} ms, evaluation at {costs.eval_images_per_s:.0f} "
            f"images/s, {costs.checkpoint_s:.1f} s per checkpoint) and the export about {costs.export_s():.0f} s, "
            f"so {epochs} epoch(s) fit in the {seconds:.0f} s left ({PLAN_MARGIN:.0%} kept in reserve); the "
            f"learning-rate schedule is planned to end with them.")


@torch.no_grad()
def _eval_rate(model: torch.nn.Module, batches: list[torch.Tensor], autocast: Any, device: torch.device,
               clock: Callable[[], float]) -> float:
    model.eval()
    with autocast():
        model(batches[0].to(device))  # untimed: the first call pays for kernel choice
        t0 = clock()
        for x in batches:
            model(x.to(device))
    return sum(len(x) for x in batches) / max(clock() - t0, 1e-6)


def _checkpoint_s(loop: Loop, scratch: Path, clock: Callable[[], float]) -> float:
    """One write of what an epoch's checkpoint holds, to the disk the checkpoints go to."""
    path = scratch / f"budget-probe-{loop.dist.rank}.pt"  # every data-parallel rank measures its own
    t0 = clock()
    atomic_save({"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
                 **({"ema": loop.ema.state_dict()} if loop.ema is not None else {})}, path)
    seconds = clock() - t0
    path.unlink(missing_ok=True)
    return seconds


def measure(loop: Loop, train: Split, val: Split, scratch: Path) -> Costs:
    """Seconds per training step, evaluation images/s and a checkpoint's write, measured with the run's
    own model and data (the checkpoint in `scratch`, where the run's checkpoints go).

    The probe steps are real steps on the first batches (through the same augmentation and autocast);
    the model, optimizer, scheduler and random states are restored after them, so the run that
    follows trains exactly as it would have without the probe.
    """
    clock = loop.budget.clock
    saved = copy.deepcopy((loop.model.state_dict(), loop.optimizer.state_dict(), loop.scheduler.state_dict()))
    saved_ema = copy.deepcopy(loop.ema.state_dict()) if loop.ema is not None else None
    randomness = rng_states()
    loop.trained.train()
    times = []
    for step, x, y, soft in train_batches(loop, train, epoch=0, start_step=0):
        t0 = clock()
        train_step(loop, x, y, soft)
        if loop.device.type == "cuda":
            torch.cuda.synchronize(loop.device)
        times.append(clock() - t0)
        if step >= PROBE_STEPS:
            break
    batches = [x for x, _ in eval_batches(loop, val, limit=2 * eval_batch_size(loop))]
    rate = _eval_rate(loop.evaluated, batches, loop.autocast, loop.device, clock)
    checkpoint_s = _checkpoint_s(loop, scratch, clock)
    loop.model.load_state_dict(saved[0])
    loop.optimizer.load_state_dict(saved[1])
    loop.scheduler.load_state_dict(saved[2])
    if loop.ema is not None and saved_ema is not None:
        loop.ema.load_state_dict(saved_ema)
    restore_rng(randomness)
    timed = times[1:] or times
    return Costs(step_s=sum(timed) / len(timed), eval_images_per_s=rate, checkpoint_s=checkpoint_s)
