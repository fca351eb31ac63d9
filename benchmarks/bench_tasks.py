"""Issue 17's figures: a multi-label set made from a folder-per-label set, and training on from an earlier run.

    python benchmarks/bench_tasks.py multilabel [--data DIR] [--epochs N] [--architecture A] [--weights W] ...
    python benchmarks/bench_tasks.py train-on   [--data DIR] [--epochs N] [--architecture A] [--weights W] ...

Both write manifests (JSONL, paths relative to the manifest) in a work folder that holds the images (hard links
where the file system allows, else copies). Default data: shared/datasets/trashnet.

- `multilabel`: every image keeps its folder's label; a second tag, "bright", goes to the images whose mean
  brightness (of the 64-px grey thumbnail) is in the top quarter: a pure function of the image, on a quarter
  of them. Trains (`--task multilabel`), then prints the subset accuracy, micro/macro F1, mAP, each label's
  threshold, F1 and AP, and what the generated console app prints for a validation image with two labels.
- `train-on`: a seeded fifth of each label is marked validation (`"split": "validation"`), the same for every
  run. Run A trains on half of each label's training images; run B continues from A (same labels:
  `from_model`, learning rates x continue_lr_scale) on all training images; run C trains on all from the
  same starting weights as A. B and C have the same epochs. Prints the three accuracies.

The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script

TRASHNET = _common.SHARED_DATASETS / "trashnet"


def _images(data: Path) -> list[tuple[str, str]]:
    """(path relative to `data`, label) of every file of a folder-per-label set, in the trainer's order."""
    from modelbuilder.training.data import discover

    samples, _ = discover(data)
    return [(str(s.path.relative_to(data.resolve())), s.label) for s in samples]


def _workspace(data: Path, work: Path) -> Path:
    """work/images: the data's files, hard-linked where the file system allows (else copied). A manifest reads
    only under its own folder, and a symbolic link out of it is refused like any other way out."""
    images = work / "images"
    for rel, _ in _images(data):
        target = images / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(data / rel, target)
        except OSError:
            shutil.copy2(data / rel, target)
    return images


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _brightness(path: Path) -> float:
    with Image.open(path) as img:
        img.draft("L", (64, 64))
        return float(np.asarray(img.convert("L").resize((64, 64))).mean())


def _train(recipe: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import NullReporter

    started = time.perf_counter()
    result = run_training(TrainConfig.from_dict(recipe), run_dir, NullReporter())
    _common.log(f"{run_dir.name}: accuracy {result.metrics['accuracy']:.4f} in {time.perf_counter() - started:.0f} s")
    return result.metrics


def multilabel(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    images = _workspace(args.data, work)
    found = _images(args.data)
    light = [_brightness(images / rel) for rel, _ in found]
    cut = float(np.quantile(light, 0.75))
    rows = [{"image_url": f"images/{rel}", "label": [label, *(["bright"] if value >= cut else [])]}
            for (rel, label), value in zip(found, light, strict=True)]
    manifest = _write(work / "multilabel.jsonl", rows)
    recipe = {**args.recipe, "data": str(manifest), "task": "multilabel", "name": "Tagged"}
    metrics = _train(recipe, work / "run-multilabel")
    app = work / "run-multilabel" / "Tagged.ConsoleApp" / "main.py"
    from modelbuilder.results.runtime import PredictionEngine

    engine = PredictionEngine.load(work / "run-multilabel" / "MLModel.zip")
    two = next((images / rel for rel, _ in found if len(engine.predict(images / rel).predicted_labels or []) > 1),
               None)
    shown = subprocess.run([sys.executable, str(app), str(two)], capture_output=True, text=True,
                           check=True).stdout if two is not None else "(no image got two labels)"
    print(shown)
    return {"tagged_bright": sum(1 for row in rows if len(row["label"]) > 1), "images": len(rows),
            **{k: metrics[k] for k in ("subset_accuracy", "micro_f1", "macro_f1", "mean_average_precision",
                                       "thresholds")},
            "per_label_f1": {row["label"]: round(row["f1"], 4) for row in metrics["per_label"]},
            "per_label_ap": {row["label"]: round(row["average_precision"], 4) for row in metrics["per_label"]}}


def train_on(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    _workspace(args.data, work)
    rng = random.Random(args.seed)
    by_label: dict[str, list[str]] = {}
    for rel, label in _images(args.data):
        by_label.setdefault(label, []).append(rel)
    rows_all, rows_half = [], []
    for label, paths in sorted(by_label.items()):
        shuffled = paths[:]
        rng.shuffle(shuffled)
        n_val = max(1, round(len(paths) * 0.2))
        val, train = set(shuffled[:n_val]), shuffled[n_val:]
        half = set(train[: len(train) // 2])
        for rel in paths:
            row = {"image_url": f"images/{rel}", "label": label, "split": "validation" if rel in val else "train"}
            rows_all.append(row)
            if rel in half or rel in val:
                rows_half.append(row)
    everything, half = _write(work / "all.jsonl", rows_all), _write(work / "half.jsonl", rows_half)
    a = _train({**args.recipe, "data": str(half), "name": "Half"}, work / "run-a-half")
    b = _train({**args.recipe, "data": str(everything), "name": "Continued",
                "from_model": str(work / "run-a-half" / "checkpoints" / "best.pt")}, work / "run-b-continued")
    c = _train({**args.recipe, "data": str(everything), "name": "Scratch"}, work / "run-c-scratch")
    started = json.loads((work / "run-b-continued" / "recipe.json").read_text())["from_model"]  # as B recorded it
    return {"epochs": args.epochs, "a_half_accuracy": a["accuracy"], "b_continued_accuracy": b["accuracy"],
            "c_scratch_accuracy": c["accuracy"], "continued_beats_scratch": b["accuracy"] > c["accuracy"],
            "b_started_from": Path(started).relative_to(work.resolve()).as_posix(),
            "train_images_half": sum(1 for r in rows_half if r["split"] == "train"),
            "train_images_all": sum(1 for r in rows_all if r["split"] == "train"),
            "validation_images": sum(1 for r in rows_all if r["split"] == "validation")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("multilabel", "train-on"))
    parser.add_argument("--data", type=Path, default=TRASHNET)
    parser.add_argument("--work", type=Path, default=None, help="folder for manifests and runs (default: a new "
                        "temporary one)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--architecture", default="resnet50")
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any recipe setting")
    args = parser.parse_args()
    args.recipe = {"architecture": args.architecture, "weights": args.weights, "epochs": args.epochs,
                   "seed": args.seed, **({"image_size": args.image_size} if args.image_size else {}),
                   **{k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
                      for k, v in (item.split("=", 1) for item in args.set)}}
    print(f"machine: {_common.machine()}; data: {args.data}")
    with tempfile.TemporaryDirectory(prefix=f"bench-tasks-{args.what}-") as tmp:
        work = args.work or Path(tmp)  # --work keeps the manifests and runs to look at afterwards
        _common.log(f"{args.what} on {args.data} in {work}")
        figures = multilabel(args, work) if args.what == "multilabel" else train_on(args, work)
    print(json.dumps({"what": args.what, "data": str(args.data), **figures}))


if __name__ == "__main__":
    main()
