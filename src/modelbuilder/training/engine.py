"""One training, start to finish: data -> model -> loop -> evaluate -> export -> results.

`run_training` is the engine's only entry point. It knows nothing of workspaces or databases: it gets
a recipe, a folder to write into and a Reporter, and leaves in that folder everything a user gets
back (the three assets, the two generated projects, metrics, plots, checkpoints, the data report).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from modelbuilder import names
from modelbuilder.config import get_settings
from modelbuilder.errors import DataError, InvalidInput
from modelbuilder.results.files import (
    BEST_CHECKPOINT,
    DATA_REPORT_FILE,
    METRICS_FILE,
    RECIPE_FILE,
)
from modelbuilder.training import budget as budget_mod
from modelbuilder.training import objective
from modelbuilder.training.balance import class_weights
from modelbuilder.training.checkpoint import CHECKPOINT_DIR, TrainState, atomic_save, load_checkpoint
from modelbuilder.training.distributed import Dist, from_environment
from modelbuilder.training.finalize import TrainResult, finalize
from modelbuilder.training.head import extract_features, train_head
from modelbuilder.training.loop import (
    Budget,
    FitResult,
    Loop,
    Preempted,
    fit,
    resume_state,
    steps_per_epoch,
    stop_reason,
    warmup_cosine,
)
from modelbuilder.training.model import WeightsInfo, build_model, head_prefix
from modelbuilder.training.prepare import PreparedData, prepare_data
from modelbuilder.training.presets import ClassificationPresetEval, ClassificationPresetTrain, MixBatch
from modelbuilder.training.recipe import DEFAULT_EPOCHS, MULTILABEL, TrainConfig
from modelbuilder.training.reporter import Reporter
from modelbuilder.training.start import CONTINUE, StartingPoint, apply_start, load_start


def choose_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def choose_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the hardware does bf16 natively (CUDA with bf16, CPUs with AMX or
    AVX512-BF16); float32 elsewhere, where bf16 is emulated and several times slower."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return torch.bfloat16 if native else None


def _optimizer(model: torch.nn.Module, recipe: TrainConfig, weights: WeightsInfo, device: torch.device) -> Any:
    """AdamW; no weight decay on biases and norms; a smaller rate for a pretrained backbone, and for every
    layer (`continue_lr_scale`) when an earlier model with the same labels is continued."""
    pretrained = weights.pretrained and weights.source != CONTINUE
    scale = recipe.continue_lr_scale if weights.source == CONTINUE else 1.0
    head = head_prefix(model)  # type: ignore[arg-type]
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith(head), p.ndim > 1), []).append(p)
    param_groups = [
        {"params": ps, "weight_decay": recipe.weight_decay if decay else 0.0,
         "lr": scale * recipe.lr * (1.0 if is_head or not pretrained else recipe.backbone_lr_scale)}
        for (is_head, decay), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=scale * recipe.lr, fused=device.type == "cuda")


def run_training(recipe: TrainConfig, run_dir: str | os.PathLike[str], reporter: Reporter, *,
                 resume: str | os.PathLike[str] | None = None, cache_root: Path | None = None,
                 offline: bool = False, clock: Callable[[], float] = time.monotonic) -> TrainResult:
    """Train per `recipe` into `run_dir`, reporting to `reporter`.

    Launched data-parallel (torchrun, Ray Train), every rank calls this with the same arguments (and
    its own reporter); rank 0 reports, checkpoints and exports, and only its result has outputs.
    A time budget counts from here (`clock`), decoding and the export included.
    """
    started = clock()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    d = from_environment()
    checkpoint = load_checkpoint(Path(resume)) if resume else None
    if checkpoint is not None:
        recipe = TrainConfig.from_dict(checkpoint["recipe"])

    start = load_start(recipe.from_model) if recipe.from_model else None
    if start is not None:  # the starting model's architecture, and its image size unless one is given
        recipe = recipe.with_(architecture=start.architecture, image_size=recipe.image_size or start.image_size)

    settings = get_settings()
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)

    reporter.status("Preparing", "reading, checking and decoding the data")
    data = prepare_data(recipe, cache_root or settings.decoded_cache, reporter)
    name = recipe.name or names.project_name_from(Path(recipe.data).expanduser().resolve().stem)
    recipe = recipe.with_(image_size=data.image_size, name=name, task=data.task,
                          batch_size=recipe.batch_size or TrainConfig.auto_batch_size(len(data.train)))
    if checkpoint is not None and checkpoint["labels"] != data.labels:
        raise DataError("The data's labels differ from the checkpoint's.", "resume with the same data.")
    if d.main:
        (run_dir / DATA_REPORT_FILE).write_text(json.dumps(data.report.to_dict(), indent=2))
        for skip in data.report.skipped:
            reporter.log(f"Skipped {skip.path}: {skip.reason}", "warning")

    worked_s = checkpoint["state"]["elapsed_s"] if checkpoint is not None else 0.0  # by earlier attempts
    stop_at = None  # until plan_time measures the export, reserve its fixed part
    if recipe.time_budget_s is not None:
        stop_at = started + recipe.time_budget_s - worked_s - budget_mod.EXPORT_FIXED_S
    loop, weights = build_loop(recipe, data, reporter, d, offline or settings.offline, Budget(clock, stop_at), start)
    where = "from the start"
    if checkpoint is not None:
        where = f"resumed at epoch {checkpoint['state']['epoch'] + 1}, step {checkpoint['state']['step']}"
    reporter.status("Running", f"training {where}")
    phases = training_phases(recipe.mode, weights)
    head_history: list[dict[str, float]] = []
    frozen: list[np.ndarray] = []  # the pretrained backbone's features of the training and validation images
    stopped = None
    if "head" in phases and checkpoint is None:
        head_history, stopped, frozen = head_phase(loop, data, recipe, weights, cache_root or settings.decoded_cache,
                                                   d)
        if stopped == "preempt":
            raise Preempted(None, 0, 0)  # a new attempt starts over; the features it computed stay cached
    if "full" in phases and not stopped:
        recipe, loop = plan_time(recipe, loop, data, worked_s, started, d, run_dir)
    state = resume_state(checkpoint, loop) if checkpoint is not None else TrainState()
    if d.main:
        recipe.save(run_dir / RECIPE_FILE)
    reporter.log(f"Training {recipe.architecture} ({weights.detail}) on {loop.device.type}"
                 f"{f' x {d.world} processes' if d.enabled else ''}, {'bf16' if loop.amp_dtype else 'float32'}"
                 f"{', channels_last' if loop.channels_last else ''}, {len(data.train)} training / {len(data.val)} "
                 f"validation images at {data.image_size} px, {loop.epochs} epochs of "
                 f"{steps_per_epoch(len(data.train), recipe.planned_batch_size)} steps, {where}.")
    if "full" in phases and not stopped:
        result = fit(loop, data.train, data.val, state, run_dir, recipe.to_dict(), data.labels,
                     recipe.bn_recalibration_images, recipe.early_stopping_patience)
    else:
        result = _head_only_result(loop, run_dir, head_history, stopped or "completed",
                                   {"labels": data.labels, "recipe": recipe.to_dict()})
    if not d.main:
        return TrainResult(run_dir, name, data.labels, {}, result.stopped, 0)
    reporter.status("Finalizing", f"training stopped ({result.stopped}); evaluating the best epoch and exporting")
    final = finalize(loop, data, recipe, run_dir, result, weights.detail, reporter,
                     frozen if len(frozen) == 2 else None)
    if head_history and "full" in phases:
        final.metrics["head_history"] = head_history
        (run_dir / METRICS_FILE).write_text(json.dumps(final.metrics, indent=2))
    return final


def training_phases(mode: str, weights: WeightsInfo) -> tuple[str, ...]:
    """head: the new head on frozen features; full: every layer. auto: head then full where pretrained."""
    if mode == "head":
        if not weights.pretrained:
            raise InvalidInput("--mode head needs pretrained weights, and none could be loaded.",
                               "make ImageNet weights available (see the warning above), pass --weights PATH, "
                               "or use --mode full.")
        return ("head",)
    if mode == "auto" and weights.pretrained and weights.source != CONTINUE:  # a continued model has its head
        return ("head", "full")
    return ("full",)


def head_phase(loop: Loop, data: PreparedData, recipe: TrainConfig, weights: WeightsInfo, cache_root: Path,
               d: Dist) -> tuple[list[dict[str, float]], str | None, list[np.ndarray]]:
    """Train the new head on cached backbone features (rank 0), then give every rank its weights.

    Returns the head's history, why the phase stopped early (a cancel, a preemption, the time budget) or
    None (it stops like the full phase does, keeping the best head so far), and the backbone's features of
    the training and validation images (rank 0; fewer when it stopped while computing them).
    """
    history: list[dict[str, float]] = []
    stopped: str | None = None
    if d.main:
        args = (cache_root, recipe.architecture, weights.detail, data.image_size)
        features = []
        for split, what in ((data.train, "training"), (data.val, "validation")):
            found = extract_features(loop, split, *args, what=what)
            if isinstance(found, str):
                stopped = found
                break
            features.append(found)
        if not stopped:
            history, stopped = train_head(loop.model.head, features[0], data.train.targets, features[1],
                                          data.val.targets, recipe.head_epochs, recipe.head_lr, recipe.weight_decay,
                                          recipe.label_smoothing, recipe.seed, should_stop=lambda: stop_reason(loop),
                                          class_weights=loss_weights(recipe, data))
            loop.model.head.to(loop.device)
            best = max(history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
            loop.reporter.log(f"Head trained on frozen features: validation accuracy {best['val_accuracy']:.4f} "
                              f"after {len(history)} of {recipe.head_epochs} epochs"
                              f"{f' (stopped: {stopped})' if stopped else ''}.")
    head_state, stopped = d.share(({k: v.cpu() for k, v in loop.model.head.state_dict().items()}, stopped))
    loop.model.head.load_state_dict(head_state)
    return history, stopped, features if d.main else []


def _head_only_result(loop: Loop, run_dir: Path, history: list[dict[str, float]], stopped: str,
                      about: dict[str, Any]) -> FitResult:
    """The head phase's result as the full phase would give it: its best epoch's weights (the model as it
    stands when the phase stopped before its first epoch), with `about` (labels and recipe) beside them."""
    best_path = run_dir / BEST_CHECKPOINT
    if not history:
        atomic_save({"model": loop.model.state_dict(), "epoch": 0, "metrics": {}, **about}, best_path)
        return FitResult(TrainState(), stopped, best_path)
    best = max(range(len(history)), key=lambda i: (history[i]["val_accuracy"], -history[i]["val_loss"]))
    atomic_save({"model": loop.model.state_dict(), "epoch": best + 1, "metrics": history[best], **about}, best_path)
    state = TrainState(epoch=len(history), best_accuracy=history[best]["val_accuracy"],
                       best_loss=history[best]["val_loss"], best_epoch=best + 1, history=history)
    return FitResult(state, stopped, best_path)


def plan_time(recipe: TrainConfig, loop: Loop, data: PreparedData, worked_s: float, started: float,
              d: Dist, run_dir: Path) -> tuple[TrainConfig, Loop]:
    """Settle the epochs and the deadline: without a time budget, the recipe's epochs (or the default);
    with one, measure what an epoch and the export cost here, plan the epochs to fit when none were
    given, and stop training in time for the export."""
    if recipe.time_budget_s is None:
        epochs = recipe.epochs or DEFAULT_EPOCHS
        return recipe.with_(epochs=epochs), replace(loop, epochs=epochs, scheduler=schedule(loop.optimizer, recipe,
                                                                                            len(data.train), epochs))
    clock = loop.budget.clock
    costs = replace(d.share(budget_mod.measure(loop, data.train, data.val, run_dir / CHECKPOINT_DIR)),
                    review_images=len(data.train))  # the label check's forward pass after training
    seconds = recipe.time_budget_s - (clock() - started) - worked_s
    steps = steps_per_epoch(len(data.train), recipe.planned_batch_size)
    eval_images = len(data.val) + min(recipe.bn_recalibration_images, len(data.train))
    fits = budget_mod.epochs_that_fit(costs, seconds, steps, eval_images)
    if recipe.epochs is None:
        loop.reporter.log(budget_mod.describe(costs, fits, seconds, steps, eval_images))
    elif recipe.epochs > fits and d.main:
        loop.reporter.log(f"About {fits} of the {recipe.epochs} epochs fit in the time budget here; training stops "
                          "at the budget with its schedule unfinished. Leave out --epochs to plan the schedule to "
                          "the budget instead.", "warning")
    epochs = recipe.epochs or fits
    stop_at = clock() + seconds - costs.export_s()
    return recipe.with_(epochs=epochs), replace(loop, epochs=epochs, budget=Budget(clock, stop_at),
                                                scheduler=schedule(loop.optimizer, recipe, len(data.train), epochs))


def schedule(optimizer: torch.optim.Optimizer, recipe: TrainConfig, train_images: int, epochs: int) -> Any:
    """Warm-up, then cosine decay to zero at the end of the last epoch."""
    steps = steps_per_epoch(train_images, recipe.planned_batch_size)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(epochs * steps, max(1, round(recipe.warmup_epochs * steps))))


def build_loop(recipe: TrainConfig, data: PreparedData, reporter: Reporter, d: Dist,
               offline: bool, budget: Budget, start: StartingPoint | None = None) -> tuple[Loop, WeightsInfo]:
    """Device, precision, model (wrapped for data-parallel), optimizer and a provisional schedule for `recipe`
    (`plan_time` settles the epochs). The model starts from `start` (else from `recipe.from_model`, if set)."""
    device = choose_device(recipe.device)
    if device.type == "cuda" and d.enabled:
        device = torch.device("cuda", d.local_rank)
    amp = choose_precision(recipe.precision, device)
    channels_last = recipe.channels_last if recipe.channels_last is not None else recipe.architecture != "tiny"
    if start is None and recipe.from_model:
        start = load_start(recipe.from_model)
    model, weights = build_model(start.architecture if start else recipe.architecture, len(data.labels),
                                 "none" if start else recipe.weights, offline=offline,
                                 zero_init_residual=recipe.zero_init_residual)
    if start is not None:
        weights = apply_start(model, start, data.labels)
        if d.main:
            reporter.log(f"Starting from an earlier model: {weights.detail}"
                         + (f"; learning rates x {recipe.continue_lr_scale}." if weights.source == CONTINUE else "."))
    if weights.warning and d.main:
        reporter.log(weights.warning, "warning")
    model = model.to(device).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    trained: nn.Module | None = None
    if d.enabled:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if recipe.compile:
        if device.type == "cuda":
            # evaluation stays eager
            trained = cast(nn.Module, torch.compile(trained if trained is not None else model))
        elif d.main:
            reporter.log(f"--compile applies on CUDA only; training eagerly on {device.type}.", "warning")
    optimizer = _optimizer(model, recipe, weights, device)
    epochs = recipe.epochs or DEFAULT_EPOCHS
    augment = ClassificationPresetTrain(data.image_size, recipe.crop_scale_min, recipe.hflip)
    mix = MixBatch(len(data.labels), recipe.mixup_alpha, recipe.cutmix_alpha)
    weights_by_label = loss_weights(recipe, data, device)
    loop = Loop(
        model=model, optimizer=optimizer, scheduler=schedule(optimizer, recipe, len(data.train), epochs),
        criterion=objective.criterion(data.task, None, recipe.label_smoothing),
        reweighted=None if weights_by_label is None else objective.criterion(
            data.task, weights_by_label, recipe.label_smoothing),
        device=device, amp_dtype=amp,
        channels_last=channels_last, train_preset=augment, eval_preset=ClassificationPresetEval(data.image_size),
        batch_size=recipe.planned_batch_size, seed=recipe.seed, epochs=epochs, reporter=reporter, budget=budget, dist=d,
        train_model=trained, mix=mix if mix else None,
        ema=moving_average(model, recipe.ema_decay) if recipe.ema_decay > 0 else None)
    return loop, weights


def loss_weights(recipe: TrainConfig, data: PreparedData, device: torch.device | None = None) -> torch.Tensor | None:
    """The loss weight of each label for the recipe's `class_weights` (None: unweighted; always, multi-label)."""
    if data.task == MULTILABEL:
        return None
    weights = class_weights(recipe.class_weights, np.bincount(data.train.targets, minlength=len(data.labels)))
    return None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)


Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]  # AveragedModel's multi_avg_fn gets either


def moving_average(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of the weights and buffers, with timm's warm-up of the decay
    ((1 + n) / (10 + n) until it reaches `decay`) so the first steps' random weights fade quickly."""

    @torch.no_grad()
    def update(averaged: Tensors, current: Tensors, count: torch.Tensor | int) -> None:
        rate = min(decay, (1 + int(count)) / (10 + int(count)))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - rate)
        else:  # integer buffers (BatchNorm's batch count) follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=update, use_buffers=True)
