"""The end of a training: the best weights evaluated, the data review, the verified ONNX export, MLModel.zip
(with a multi-label model's thresholds) and the generated projects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelbuilder.results.codegen import generate_projects
from modelbuilder.results.files import MAP_FILE, METRICS_FILE, MODEL_FILE, ZIP_FILE
from modelbuilder.results.pipeline import write_label_map, write_model_package
from modelbuilder.results.runtime import Preprocess
from modelbuilder.training.evaluate import (
    classification_metrics,
    multilabel_metrics,
    plot_confusion_matrix,
    plot_training_curves,
)
from modelbuilder.training.export import INPUT_NAME, OUTPUT_NAME, export_onnx, verify_onnx
from modelbuilder.training.loop import Loop, Split, eval_batches, evaluate
from modelbuilder.training.model import IMAGENET_MEAN, IMAGENET_STD
from modelbuilder.training.prepare import PreparedData
from modelbuilder.training.recipe import MULTILABEL, TrainConfig
from modelbuilder.training.reporter import Progress, Reporter
from modelbuilder.training.suspects import head_inputs, review

MULTICLASS_SUMMARY = ("accuracy", "macro_accuracy", "macro_f1")  # the metrics in pipeline.json, by task
MULTILABEL_SUMMARY = ("accuracy", "micro_f1", "macro_f1", "mean_average_precision")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    name: str
    labels: list[str]
    metrics: dict[str, Any]
    stopped: str
    best_epoch: int
    outputs: dict[str, Path] = field(default_factory=dict)


def finalize(loop: Loop, data: PreparedData, recipe: TrainConfig, run_dir: Path, result: Any, weights: str,
             reporter: Reporter, frozen: list[np.ndarray] | None = None) -> TrainResult:
    """Best weights -> metrics and plots -> the data review -> verified ONNX -> MLModel.zip -> generated
    projects. `frozen`: the pretrained backbone's features from the head phase, for the label check."""
    best = torch.load(result.best_weights, map_location="cpu", weights_only=False)
    loop.model.load_state_dict(best["model"])
    loop = replace(loop, ema=None)  # the best weights (averaged or not) are now the model's
    reporter.progress(Progress("exporting", result.state.epoch, loop.epochs, 0, 0))
    with head_inputs(loop) as val_features:
        _, _, probs = evaluate(loop, data.val)
    multilabel = data.task == MULTILABEL
    metrics = (multilabel_metrics if multilabel else classification_metrics)(probs, data.val.targets, data.labels)
    thresholds = [metrics["thresholds"][label] for label in data.labels] if multilabel else None
    history = result.state.history
    review(loop, data, probs, torch.cat(val_features).numpy(), history, run_dir, recipe.seed, reporter, frozen,
           thresholds)
    metrics.update({"best_epoch": result.state.best_epoch, "epochs_run": len(history), "stopped": result.stopped,
                    "weights": weights, "image_size": data.image_size, "architecture": recipe.architecture,
                    "train_images": len(data.train), "training_seconds": round(result.state.elapsed_s, 2),
                    "images_per_s": float(np.mean([h["images_per_s"] for h in history])) if history else 0.0,
                    "history": history})
    if not multilabel:
        plot_confusion_matrix(np.array(metrics["confusion_matrix"]), data.labels, run_dir / "confusion_matrix.png")
    plot_training_curves(history, run_dir / "training_curves.png")

    onnx_path = export_onnx(loop.model, data.image_size, run_dir / MODEL_FILE)
    images = torch.cat([x for x, _ in _first_batches(loop, data.val, 64)]).float()
    check = verify_onnx(onnx_path, loop.model, images.contiguous())
    metrics["export_check"] = check.to_dict()
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    write_label_map(run_dir / MAP_FILE, data.labels)
    spec = Preprocess(resize=Preprocess.resize_for(data.image_size), crop=data.image_size, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD)
    summary = {k: metrics[k] for k in (*(MULTILABEL_SUMMARY if multilabel else MULTICLASS_SUMMARY), "log_loss",
                                       "best_epoch", "num_images", "architecture", "image_size")}
    zip_path = write_model_package(run_dir / ZIP_FILE, onnx_path, data.labels, spec, summary, INPUT_NAME, OUTPUT_NAME,
                                   thresholds=thresholds)
    projects = generate_projects(recipe.name or "MLModel", run_dir, zip_path, data.sample_image, overwrite=True)
    if multilabel:
        reporter.log(f"Validation subset accuracy {metrics['accuracy']:.4f}, micro F1 {metrics['micro_f1']:.4f}, "
                     f"macro F1 {metrics['macro_f1']:.4f}, mAP {metrics['mean_average_precision']:.4f} at "
                     f"per-label thresholds {metrics['thresholds']} (best epoch {result.state.best_epoch}).")
    reporter.log(f"Validation accuracy {metrics['accuracy']:.4f} (best epoch {result.state.best_epoch}); "
                 f"results in {run_dir}.")
    outputs = {"onnx": onnx_path, "map": run_dir / MAP_FILE, "zip": zip_path, "console_app": projects.console_app,
               "model": projects.model, "metrics": run_dir / METRICS_FILE}
    return TrainResult(run_dir, recipe.name or "MLModel", data.labels, metrics, result.stopped,
                       result.state.best_epoch, outputs)


def _first_batches(loop: Loop, split: Split, limit: int) -> Any:
    return ((x.cpu(), y) for x, y in eval_batches(loop, split, limit=limit))
