"""Time to accuracy: modelbuilder's whole `train` against a plain torchvision loop, as a user waits for it.

Both sides train the same architecture on the same images at the same size for the same epochs with
the same seed, one after the other, each in a process of its own (so peak memory does not mix):

- ours: `run_training` with the recipe's defaults (decoded cache, batch augmentation on uint8 tensors,
  its own choice of precision, memory format and batch size; `--set KEY=VALUE` changes a recipe
  setting). Its cache starts cold, in a fresh folder. Its wall time is the whole command up to the
  export: decoding, every phase, every evaluation (and BatchNorm re-estimation where a recipe turns it
  on); the export (ONNX, MLModel.zip, the generated projects) is timed and reported beside it.
- reference: what a tutorial would write: `ImageFolder` with Pillow decoding and `transforms`
  (RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize) every epoch, a `DataLoader` with one
  worker per core, float32, AdamW with the recipe's learning rate and weight decay and a cosine
  schedule, evaluation after every epoch with Resize + CenterCrop; its best epoch's accuracy counts.
  Its wall time is its whole loop, training and evaluation.

The headline figures are MLPerf's: each side's wall time, their ratio (reference / ours: above 1 means
ours is faster), and the time to accuracy: the wall time each side takes to first reach the
reference's best validation accuracy (ours may never reach it: then null). Images/s of the training
steps alone are printed too. torchvision's ImageFolder does not read GIF files, so on hymenoptera the
reference trains on one image fewer (the GIF placeholder). The last line printed is one JSON object;
with --all, one line per data set comes before it and the last holds the mean of the differences.

    python benchmarks/bench_train.py [--quick] [--all | --data DIR] [--epochs N] [--image-size PX]
                                     [--architecture resnet50|resnet18|mobilenet_v3_large|tiny]
                                     [--set KEY=VALUE ...] [--side both|ours|reference]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script


# --- ours ------------------------------------------------------------------------------------------
def recipe_overrides(pairs: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs, each value read as YAML (numbers, booleans, null, strings)."""
    import yaml

    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {pair!r} is not KEY=VALUE. Fix: e.g. --set lr=0.003.")
        values[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return values


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    started = time.perf_counter()

    class Clock(MemoryReporter):
        """Remembers when each status began and when each epoch's evaluation ended."""

        def __init__(self) -> None:
            super().__init__()
            self.at: dict[str, float] = {}
            self.curve: list[tuple[float, float]] = []  # (seconds since start, validation accuracy)

        def status(self, status: str, reason: str = "") -> None:
            self.at.setdefault(status, time.perf_counter())
            if status == "Finalizing":  # training is over; exporting (which the reference does not do) starts
                self.training_peak_rss_mb = _common.peak_rss_mb()["self"]
            super().status(status, reason)

        def metrics(self, epoch: int, values: dict[str, float]) -> None:
            self.curve.append((time.perf_counter() - started, values["val_accuracy"]))
            _common.log(f"ours epoch {epoch}: val accuracy {values['val_accuracy']:.4f}, "
                        f"{values['images_per_s']:.1f} img/s, {self.curve[-1][0]:.0f} s")
            super().metrics(epoch, values)

    settings = {"architecture": args.architecture, "weights": args.weights, "image_size": int(args.image_size),
                "epochs": args.epochs, "seed": args.seed, "precision": args.precision,
                "early_stopping_patience": args.epochs + 1, **recipe_overrides(args.set or [])}
    recipe = TrainConfig(data=args.train, validation_data=args.val, **settings)
    work = Path(args.workdir)
    clock = Clock()
    result = run_training(recipe, work / "run", clock, cache_root=work / "cache", offline=args.weights == "none")
    ended = time.perf_counter()
    history = result.metrics["history"]
    train_images = result.metrics["train_images"]
    log = [m for _, m in clock.logs]
    return {
        "wall_s": clock.at["Finalizing"] - started, "export_s": ended - clock.at["Finalizing"],
        "prepare_s": clock.at["Running"] - clock.at["Preparing"], "train_s": result.metrics["training_seconds"],
        "img_s_steps": train_images * len(history) / result.metrics["training_seconds"],
        "val_acc": result.metrics["accuracy"], "best_epoch": result.metrics["best_epoch"], "epochs": len(history),
        "curve": clock.curve, "train_images": train_images, "val_images": result.metrics["num_images"],
        "setup": next((m for m in log if m.startswith("Training ")), ""), "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": clock.training_peak_rss_mb, "peak_rss_mb_with_export": _common.peak_rss_mb()["self"],
    }


# --- reference -------------------------------------------------------------------------------------
def _reference_model(architecture: str, num_classes: int, weights: str) -> tuple[Any, str]:
    import torchvision
    from torch import nn

    if architecture == "tiny":
        from modelbuilder.training.model import TinyNet

        return TinyNet(num_classes), "random initialisation (tiny)"
    model, detail = None, "random initialisation"
    if weights == "auto":
        try:
            model = getattr(torchvision.models, architecture)(weights="DEFAULT")
            detail = "ImageNet weights"
        except Exception as exc:  # noqa: BLE001 - offline: train from scratch, as ours then does
            detail = f"random initialisation (ImageNet weights unavailable: {type(exc).__name__})"
    if model is None:
        model = getattr(torchvision.models, architecture)(weights=None)
    if isinstance(getattr(model, "fc", None), nn.Linear):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model, detail


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The plain loop, as in torchvision's transfer-learning tutorial (with AdamW + cosine)."""
    import torch
    from torch import nn
    from torchvision import datasets, transforms

    from modelbuilder.training.recipe import TrainConfig

    torch.manual_seed(args.seed)
    defaults = TrainConfig(data=args.train)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = int(args.image_size)
    normalize = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train_set = datasets.ImageFolder(args.train, transforms.Compose([
        transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    val_set = datasets.ImageFolder(args.val, transforms.Compose([
        transforms.Resize(round(size * 8 / 7)), transforms.CenterCrop(size), transforms.ToTensor(), normalize]))
    workers = args.workers if args.workers is not None else len(os.sched_getaffinity(0))
    loader_args = {"batch_size": args.batch_size, "num_workers": workers, "pin_memory": device.type == "cuda"}
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True, **loader_args)
    val_loader = torch.utils.data.DataLoader(val_set, shuffle=False, **loader_args)
    model, detail = _reference_model(args.architecture, len(train_set.classes), args.weights)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))
    criterion = nn.CrossEntropyLoss()
    train_s = eval_s = 0.0
    accuracies, curve = [], []
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        model.eval()
        t0 = time.perf_counter()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
        eval_s += time.perf_counter() - t0
        accuracies.append(correct / len(val_set))
        curve.append((time.perf_counter() - started, accuracies[-1]))
        _common.log(f"reference epoch {epoch + 1}/{args.epochs}: val accuracy {accuracies[-1]:.4f}, "
                    f"{len(train_set) * (epoch + 1) / train_s:.1f} img/s")
    images = len(train_set) * args.epochs
    return {
        "img_s_steps": images / train_s, "val_acc": max(accuracies), "curve": curve, "val_acc_last": accuracies[-1],
        "best_epoch": accuracies.index(max(accuracies)) + 1, "epochs": args.epochs,
        "train_images": len(train_set), "val_images": len(val_set), "train_s": train_s, "eval_s": eval_s,
        "wall_s": time.perf_counter() - started, "workers": workers, "weights": detail, "device": device.type,
        "torch_threads": torch.get_num_threads(), "peak_rss_mb": _common.peak_rss_mb()["self"],
        "workers_peak_rss_mb": _common.peak_rss_mb()["largest_child"],
    }


# --- the comparison --------------------------------------------------------------------------------
SHARED_SETS = ("hymenoptera", "trashnet", "sign-digits")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="folder-per-label images, or a folder with train/ and val/ (default: "
                   "../shared/datasets/hymenoptera, else the digits demo set)")
    p.add_argument("--all", action="store_true", help=f"each of ../shared/datasets/{{{','.join(SHARED_SETS)}}}")
    p.add_argument("--epochs", type=int, help="epochs on each side (default 10; --quick: 2)")
    p.add_argument("--image-size", help="input size in px, or auto: the size ours would choose from the data "
                   "(default 64 for photos, 32 for digits)")
    p.add_argument("--architecture", default="resnet50", help="resnet50 (default), resnet18, mobilenet_v3_large, tiny")
    p.add_argument("--weights", default="none", choices=("none", "auto"),
                   help="none (default: both from random initialisation) or auto (ImageNet weights where cached)")
    p.add_argument("--batch-size", type=int, default=32, help="the reference's batch size (default 32); ours "
                   "chooses its own unless --set batch_size=N")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="ours only (default auto: bf16 + channels_last on CUDA and on CPUs with AMX or AVX512-BF16, "
                   "else float32); the reference is float32")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a recipe setting for ours (repeatable)")
    p.add_argument("--side", default="both", choices=("both", "ours", "reference"))
    p.add_argument("--workers", type=int, help="reference DataLoader workers (default: one per usable core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 epochs at 64 px: a few minutes on 2 cores")
    # internal: one side, in its own process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train", help=argparse.SUPPRESS)
    p.add_argument("--val", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(args: argparse.Namespace) -> None:
    values = run_ours(args) if args.side == "ours" else run_reference(args)
    _common.write_result(args.result, values)


def time_to(curve: list[list[float]], accuracy: float) -> float | None:
    """Seconds until a side's validation accuracy first reached `accuracy` (None: never)."""
    return next((t for t, acc in curve if acc >= accuracy - 1e-9), None)


def chosen_size(requested: str | None, data: _common.Dataset, seed: int) -> int:
    if requested == "auto":
        from modelbuilder.training.data import choose_image_size, discover

        return choose_image_size([sample.path for sample in discover(data.train)[0]], seed=seed)
    if requested is None:
        return 64 if data.photos else 32
    if not requested.isdigit():
        raise SystemExit(f"error: --image-size {requested!r} is not a number of pixels. Fix: e.g. 64, or auto.")
    return int(requested)


def compare(args: argparse.Namespace, data: _common.Dataset, work: Path) -> dict[str, Any]:
    epochs = args.epochs or (2 if args.quick else 10)
    size = chosen_size(args.image_size, data, args.seed)
    side_args = ["--train", str(data.train), "--val", str(data.val), "--epochs", str(epochs), "--image-size",
                 str(size), "--architecture", args.architecture, "--weights", args.weights, "--batch-size",
                 str(args.batch_size), "--seed", str(args.seed), "--precision", args.precision]
    side_args += [f"--set={pair}" for pair in args.set or []]
    if args.workers is not None:
        side_args += ["--workers", str(args.workers)]
    env = _common.child_env(work / "home", offline=args.weights == "none")
    _common.log(f"bench_train: {data.name} ({data.train}), {args.architecture}, {size} px, {epochs} epoch(s), "
                f"seed {args.seed}, weights {args.weights}; {_common.machine()}")
    sides: dict[str, dict[str, Any]] = {}
    for side in ("ours", "reference"):
        if args.side in (side, "both"):
            _common.log(f"{side}: {'the whole train command, cold decoded cache' if side == 'ours' else 'plain loop'}")
            sides[side] = _common.run_side(Path(__file__), [*side_args, "--side", side, "--workdir",
                                                            str(work / side)], env)
    return report(data, args, size, epochs, sides.get("ours"), sides.get("reference"))


def report(data: _common.Dataset, args: argparse.Namespace, size: int, epochs: int, ours: dict[str, Any] | None,
           ref: dict[str, Any] | None) -> dict[str, Any]:
    print(f"data: {data.name}; {args.architecture} at {size} px, {epochs} epoch(s), seed {args.seed}; "
          f"machine: {_common.machine()}")
    line: dict[str, Any] = {"data": data.name, "architecture": args.architecture, "image_size": size,
                            "epochs": epochs, "settings": args.set or []}
    if ours:
        print(f"ours:      {ours['setup']}")
        print(f"ours:      val accuracy {ours['val_acc']:.4f} (best epoch {ours['best_epoch']}); wall "
              f"{ours['wall_s']:.1f} s (decode {ours['prepare_s']:.1f} s, training steps {ours['train_s']:.1f} s at "
              f"{ours['img_s_steps']:.1f} img/s, the rest evaluation, checkpoints and the data report), export "
              f"{ours['export_s']:.1f} s; peak RSS {ours['peak_rss_mb']:.0f} MiB "
              f"({ours['peak_rss_mb_with_export']:.0f} with the export)")
        line.update({"ours_val_acc": round(ours["val_acc"], 4), "ours_wall_s": round(ours["wall_s"], 2),
                     "ours_export_s": round(ours["export_s"], 2), "ours_img_s_steps": round(ours["img_s_steps"], 2),
                     "ours_peak_rss_mb": ours["peak_rss_mb"]})
    if ref:
        print(f"reference: val accuracy best {ref['val_acc']:.4f} (epoch {ref['best_epoch']}), last "
              f"{ref['val_acc_last']:.4f}; wall {ref['wall_s']:.1f} s (training steps {ref['train_s']:.1f} s at "
              f"{ref['img_s_steps']:.1f} img/s, evaluation {ref['eval_s']:.1f} s); {ref['workers']} DataLoader "
              f"workers, {ref['weights']}, {ref['device']}, float32; peak RSS {ref['peak_rss_mb']:.0f} MiB")
        line.update({"reference_val_acc": round(ref["val_acc"], 4), "reference_wall_s": round(ref["wall_s"], 2),
                     "reference_img_s_steps": round(ref["img_s_steps"], 2),
                     "reference_peak_rss_mb": ref["peak_rss_mb"]})
    if ours and ref:
        target = ref["val_acc"]
        ours_tta, ref_tta = time_to(ours["curve"], target), time_to(ref["curve"], target)
        line.update({
            "acc_delta": round(ours["val_acc"] - ref["val_acc"], 4),
            "wall_ratio": round(ref["wall_s"] / ours["wall_s"], 3),
            "ours_time_to_reference_best_s": None if ours_tta is None else round(ours_tta, 2),
            "reference_time_to_best_s": round(ref_tta, 2) if ref_tta is not None else None,
            "time_to_accuracy_ratio": None if ours_tta is None or ref_tta is None else round(ref_tta / ours_tta, 3),
        })
        print(f"ratio:     wall {line['wall_ratio']:.2f}x (reference / ours); time to the reference's best "
              f"({target:.4f}): ours {line['ours_time_to_reference_best_s']} s, reference "
              f"{line['reference_time_to_best_s']} s; accuracy {line['acc_delta']:+.4f}")
    print(json.dumps(line), flush=True)
    return line


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        if not args.all:
            compare(args, _common.resolve_data(args.data, work, args.seed), work)
            return
        lines = []
        for name in SHARED_SETS:
            folder = _common.SHARED_DATASETS / name
            if not folder.is_dir():
                raise SystemExit(f"error: --all needs {folder}. Fix: pass one set with --data instead.")
            lines.append(compare(args, _common.resolve_data(str(folder), work / name, args.seed), work / name))
    summary: dict[str, Any] = {"data": "all", "sets": [line["data"] for line in lines]}
    for key in ("acc_delta", "wall_ratio", "ours_val_acc", "reference_val_acc"):
        values = [line[key] for line in lines if line.get(key) is not None]
        if values:
            summary[f"mean_{key}"] = round(sum(values) / len(values), 4)
    if all("acc_delta" in line for line in lines):
        summary["min_acc_delta"] = min(line["acc_delta"] for line in lines)
        summary["min_wall_ratio"] = min(line["wall_ratio"] for line in lines)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
