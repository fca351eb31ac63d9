"""Training speed: modelbuilder's trainer against a plain torchvision fine-tuning loop.

Both sides train the same architecture on the same images at the same size for the same epochs with
the same seed, one after the other, each in a process of its own (so peak memory does not mix):

- ours: `run_training` with the recipe's defaults (decoded cache, batch augmentation on uint8 tensors,
  its own choice of precision and memory format). Its cache starts cold, in a fresh folder, and
  decoding it counts in its training time; the warm-cache figure (a later run on the same data) is
  reported beside it.
- reference: what a tutorial would write: `ImageFolder` with Pillow decoding and `transforms`
  (RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize) every epoch, a `DataLoader` with one
  worker per core, float32, AdamW with the recipe's learning rate and weight decay and a cosine
  schedule, evaluation after every epoch with Resize + CenterCrop; its best epoch's accuracy counts.

Images/s = training images processed / training time (the epochs' wall time, data waits included;
evaluation excluded on both sides). Peak RSS is each side's own process until its training ends (ours
then exports to ONNX, which the reference does not do: that peak is printed separately, as are the
reference's DataLoader workers and a sampled sum over each process tree). torchvision's ImageFolder
does not read GIF files, so on hymenoptera the reference trains on one image fewer (the GIF
placeholder). The last line printed is one JSON object.

    python benchmarks/bench_train.py [--quick] [--data DIR] [--epochs N] [--image-size PX] [--precision P]
                                     [--architecture resnet50|resnet18|mobilenet_v3_large|tiny]
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
def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from modelbuilder.training.job import prepare_data, run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    class Clock(MemoryReporter):
        """Remembers when each status began."""

        def __init__(self) -> None:
            super().__init__()
            self.at: dict[str, float] = {}

        def status(self, status: str, reason: str = "") -> None:
            self.at.setdefault(status, time.perf_counter())
            if status == "Finalizing":  # training is over; exporting (which the reference does not do) starts
                self.training_peak_rss_mb = _common.peak_rss_mb()["self"]
            super().status(status, reason)

    recipe = TrainConfig(data=args.train, validation_data=args.val, architecture=args.architecture,
                         weights=args.weights, image_size=args.image_size, epochs=args.epochs, seed=args.seed,
                         batch_size=args.batch_size, precision=args.precision,
                         early_stopping_patience=args.epochs + 1)
    work = Path(args.workdir)
    clock = Clock()
    started = time.perf_counter()
    result = run_training(recipe, work / "run", clock, cache_root=work / "cache", offline=args.weights == "none")
    ended = time.perf_counter()
    prepare_s = clock.at["Running"] - clock.at["Preparing"]
    # The same data again, as a later run would find it: the decoded cache is warm.
    t0 = time.perf_counter()
    prepare_data(recipe.with_(image_size=result.metrics["image_size"]), work / "cache", MemoryReporter())
    warm_prepare_s = time.perf_counter() - t0
    history = result.metrics["history"]
    images = result.metrics["train_images"] * len(history)
    train_s = result.metrics["training_seconds"]
    log = [m for _, m in clock.logs]
    return {
        "img_s": images / (prepare_s + train_s), "img_s_warm": images / (warm_prepare_s + train_s),
        "img_s_steps": images / train_s, "val_acc": result.metrics["accuracy"],
        "best_epoch": result.metrics["best_epoch"], "epochs": len(history), "train_images": images // len(history),
        "val_images": result.metrics["num_images"], "prepare_s_cold": prepare_s, "prepare_s_warm": warm_prepare_s,
        "train_s": train_s, "loop_s": clock.at["Finalizing"] - clock.at["Running"],
        "finalize_s": ended - clock.at["Finalizing"], "wall_s": ended - started,
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
    size = args.image_size
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
    accuracies = []
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
        _common.log(f"reference epoch {epoch + 1}/{args.epochs}: val accuracy {accuracies[-1]:.4f}, "
                    f"{len(train_set) * (epoch + 1) / train_s:.1f} img/s")
    images = len(train_set) * args.epochs
    return {
        "img_s": images / train_s, "val_acc": max(accuracies), "val_acc_last": accuracies[-1],
        "best_epoch": accuracies.index(max(accuracies)) + 1, "epochs": args.epochs,
        "train_images": len(train_set), "val_images": len(val_set), "train_s": train_s, "eval_s": eval_s,
        "wall_s": time.perf_counter() - started, "workers": workers, "weights": detail, "device": device.type,
        "torch_threads": torch.get_num_threads(), "peak_rss_mb": _common.peak_rss_mb()["self"],
        "workers_peak_rss_mb": _common.peak_rss_mb()["largest_child"],
    }


# --- the comparison --------------------------------------------------------------------------------
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="folder-per-label images, or a folder with train/ and val/ (default: "
                   "../shared/datasets/hymenoptera, else the digits demo set)")
    p.add_argument("--epochs", type=int, help="epochs on each side (default 3; --quick: 2)")
    p.add_argument("--image-size", type=int, help="input size in px (default 224 for photos, 32 for digits; "
                   "--quick: 64 for photos)")
    p.add_argument("--architecture", default="resnet50", help="resnet50 (default), resnet18, mobilenet_v3_large, tiny")
    p.add_argument("--weights", default="none", choices=("none", "auto"),
                   help="none (default: both from random initialisation) or auto (ImageNet weights where cached)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="ours only (default auto: bf16 + channels_last on CUDA and on CPUs with AMX or AVX512-BF16, "
                   "else float32); the reference is float32")
    p.add_argument("--workers", type=int, help="reference DataLoader workers (default: one per usable core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 epochs at 64 px: under 2 minutes on 2 cores")
    # internal: one side, in its own process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", choices=("ours", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--train", help=argparse.SUPPRESS)
    p.add_argument("--val", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child(args: argparse.Namespace) -> None:
    values = run_ours(args) if args.side == "ours" else run_reference(args)
    _common.write_result(args.result, values)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data = _common.resolve_data(args.data, work, args.seed)
        epochs = args.epochs or (2 if args.quick else 3)
        size = args.image_size or ((64 if args.quick else 224) if data.photos else 32)
        side_args = ["--train", str(data.train), "--val", str(data.val), "--epochs", str(epochs), "--image-size",
                     str(size), "--architecture", args.architecture, "--weights", args.weights, "--batch-size",
                     str(args.batch_size), "--seed", str(args.seed), "--precision", args.precision]
        if args.workers is not None:
            side_args += ["--workers", str(args.workers)]
        env = _common.child_env(work / "home", offline=args.weights == "none")
        _common.log(f"bench_train: {data.name} ({data.train}), {args.architecture}, {size} px, {epochs} epoch(s), "
                    f"seed {args.seed}, weights {args.weights}; {_common.machine()}")
        _common.log("ours: run_training, cold decoded cache ...")
        ours = _common.run_side(Path(__file__), [*side_args, "--side", "ours", "--workdir", str(work / "ours")], env)
        _common.log("reference: plain torchvision loop ...")
        ref = _common.run_side(Path(__file__), [*side_args, "--side", "reference", "--workdir", str(work / "ref")],
                               env)
    report(data, args.architecture, size, epochs, ours, ref)


def report(data: _common.Dataset, architecture: str, size: int, epochs: int, ours: dict[str, Any],
           ref: dict[str, Any]) -> None:
    print(f"data: {data.name}, {ours['train_images']} training / {ours['val_images']} validation images "
          f"(reference: {ref['train_images']} / {ref['val_images']}); {architecture} at {size} px, {epochs} epoch(s)")
    print(f"machine: {_common.machine()}")
    print(f"ours:      {ours['setup']}")
    print(f"ours:      {ours['img_s']:.2f} img/s with a cold decoded cache (decode {ours['prepare_s_cold']:.1f} s "
          f"included), {ours['img_s_warm']:.2f} img/s warm (prepare {ours['prepare_s_warm']:.2f} s); steps only "
          f"{ours['img_s_steps']:.2f} img/s; val accuracy {ours['val_acc']:.4f} (best epoch {ours['best_epoch']}); "
          f"peak RSS {ours['peak_rss_mb']:.0f} MiB in training, {ours['peak_rss_mb_with_export']:.0f} MiB with the "
          f"ONNX export; wall {ours['wall_s']:.1f} s (evaluation + BN recalibration "
          f"{ours['loop_s'] - ours['train_s']:.1f} s, export {ours['finalize_s']:.1f} s)")
    print(f"reference: {ref['img_s']:.2f} img/s ({ref['workers']} DataLoader workers, {ref['weights']}, "
          f"{ref['device']}, float32); val accuracy best {ref['val_acc']:.4f} (epoch {ref['best_epoch']}), last "
          f"{ref['val_acc_last']:.4f}; peak RSS {ref['peak_rss_mb']:.0f} MiB (+ workers, largest "
          f"{ref['workers_peak_rss_mb']:.0f} MiB); wall {ref['wall_s']:.1f} s (evaluation {ref['eval_s']:.1f} s)")
    extra = {
        "ours_img_s_warm": round(ours["img_s_warm"], 3), "ratio_warm": round(ours["img_s_warm"] / ref["img_s"], 3),
        "ours_decode_s_cold": round(ours["prepare_s_cold"], 2),
        "ours_peak_rss_mb_with_export": ours["peak_rss_mb_with_export"], "ours_wall_s": round(ours["wall_s"], 1),
        "reference_wall_s": round(ref["wall_s"], 1), "ours_tree_peak_rss_mb": ours["tree_peak_rss_mb"],
        "reference_tree_peak_rss_mb": ref["tree_peak_rss_mb"], "architecture": architecture, "image_size": size,
        "epochs": epochs, "data": data.name,
    }
    print(json.dumps(extra))
    print(json.dumps({
        "ours_img_s": round(ours["img_s"], 3), "reference_img_s": round(ref["img_s"], 3),
        "ratio": round(ours["img_s"] / ref["img_s"], 3), "ours_val_acc": round(ours["val_acc"], 4),
        "reference_val_acc": round(ref["val_acc"], 4), "ours_peak_rss_mb": ours["peak_rss_mb"],
        "reference_peak_rss_mb": ref["peak_rss_mb"],
    }))


if __name__ == "__main__":
    main()
