"""Memory: peak RSS of training on 1x and on 4x the images (the same files copied 4 times).

The decoded cache is read into batch-sized buffers, so the process's resident memory should grow with
the batch size and not with the dataset: the target is 4x within 10 % of 1x. Each size trains one
epoch in a process of its own; the validation images are the same on both. The ratio compares the
peaks reached by the end of training (before the ONNX export, whose peak does not depend on the data
and could hide growth); the whole run's ratio is printed too.

    python benchmarks/bench_memory.py [--quick] [--data DIR] [--architecture tiny|resnet18|...] [--image-size PX]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script


def replicate(source: Path, target: Path, times: int) -> int:
    """Copy every image of a folder-per-label set `times` times into `target`; returns the image count."""
    count = 0
    for label_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / label_dir.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(p for p in label_dir.iterdir() if p.is_file()):
            for k in range(times):
                shutil.copyfile(image, target / label_dir.name / f"{k}-{image.name}")
                count += 1
    return count


def child(args: argparse.Namespace) -> None:
    from modelbuilder.training.job import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    class Reporter(MemoryReporter):
        """Notes the peak when training ends and the (dataset-independent) ONNX export begins."""

        training_peak_rss_mb = 0.0

        def status(self, status: str, reason: str = "") -> None:
            if status == "Finalizing":
                self.training_peak_rss_mb = _common.peak_rss_mb()["self"]
            super().status(status, reason)

    recipe = TrainConfig(data=args.train, validation_data=args.val, architecture=args.architecture, weights="none",
                         image_size=args.image_size, epochs=1, seed=0, batch_size=args.batch_size)
    work = Path(args.workdir)
    reporter = Reporter()
    result = run_training(recipe, work / "run", reporter, cache_root=work / "cache", offline=True)
    _common.write_result(args.result, {"peak_rss_mb": reporter.training_peak_rss_mb,
                                       "peak_rss_mb_with_export": _common.peak_rss_mb()["self"],
                                       "train_images": result.metrics["train_images"]})


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="folder-per-label images, or a folder with train/ and val/ (default: "
                   "../shared/datasets/hymenoptera, else the digits demo set)")
    p.add_argument("--architecture", default="resnet18", help="resnet18 (default), tiny, resnet50, ...")
    p.add_argument("--image-size", type=int, help="input size in px (default 64 for photos, 32 for digits)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--times", type=int, default=4, help="how many copies of the data the large run trains on")
    p.add_argument("--quick", action="store_true", help="the tiny architecture (same sizes)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--train", "--val", "--workdir", "--result"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        child(args)
        return
    architecture = "tiny" if args.quick else args.architecture
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        data = _common.resolve_data(args.data, work)
        size = args.image_size or (64 if data.photos else 32)
        results: dict[int, dict[str, Any]] = {}
        for times in (1, args.times):
            folder = work / f"x{times}"
            images = replicate(data.train, folder, times)
            _common.log(f"bench_memory: {architecture} at {size} px, 1 epoch on {images} images ({times}x {data.name})")
            results[times] = _common.run_side(
                Path(__file__), ["--train", str(folder), "--val", str(data.val), "--workdir", str(work / f"run{times}"),
                                 "--architecture", architecture, "--image-size", str(size),
                                 "--batch-size", str(args.batch_size)],
                _common.child_env(work / "home"))
            shutil.rmtree(folder)
    small, large = results[1], results[args.times]
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    whole = large["peak_rss_mb_with_export"] / small["peak_rss_mb_with_export"]
    print(f"machine: {_common.machine()}; {architecture} at {size} px, batch {args.batch_size}, 1 epoch")
    for times, r in sorted(results.items()):
        print(f"{times}x ({r['train_images']} training images): peak RSS {r['peak_rss_mb']:.0f} MiB until training "
              f"ends, {r['peak_rss_mb_with_export']:.0f} MiB with the ONNX export (process tree, sampled: "
              f"{r['tree_peak_rss_mb']:.0f} MiB)")
    print(f"{args.times}x / 1x = {ratio:.3f} in training, {whole:.3f} for the whole run (target: within 1.10)")
    print(json.dumps({"peak_rss_mb_1x": small["peak_rss_mb"], f"peak_rss_mb_{args.times}x": large["peak_rss_mb"],
                      "ratio": round(ratio, 4), "ratio_whole_run": round(whole, 4),
                      "train_images_1x": small["train_images"], f"train_images_{args.times}x": large["train_images"],
                      "architecture": architecture, "image_size": size}))


if __name__ == "__main__":
    main()
