"""Memory: the peak unique memory (PSS, and USS) of training on 1x and on 4x the images (the same files
copied 4 times).

The decoded cache is read into batch-sized buffers, so the memory training holds should grow with the
batch size and not with the dataset: the target is 4x within 10 % of 1x. Each size trains one epoch in
a process of its own; the validation images are the same on both. The parent samples the child's whole
process tree (the training process and any workers it starts) every 0.1 s and sums, over the tree,
- PSS, the headline: each page divided among the processes that map it, so a page the tree's processes
  share (the torch libraries, a parent's copy-on-write heap in its DataLoader workers) counts once;
- USS: only the pages no other process maps (a lower bound);
- RSS, for comparison: a shared page counts once per process, so it overstates a tree with workers.
The ratio compares the peaks sampled until training ends (the child marks the moment it starts the
ONNX export, whose peak does not depend on the data and could hide growth); the whole run's ratio is
printed too, with the main process's own peak RSS as the kernel tracks it (not sampled). PSS is
Linux-only; elsewhere USS is the headline. On a machine that other programs share, PSS moves a little
with what else maps the same libraries.

    python benchmarks/bench_memory.py [--quick] [--data DIR] [--architecture tiny|resnet18|...] [--image-size PX]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script

SAMPLE_INTERVAL_S = 0.1


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
    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    class Reporter(MemoryReporter):
        """Notes when training ends and the (dataset-independent) ONNX export begins."""

        training_ended_at: float | None = None
        training_peak_rss_mb = 0.0

        def status(self, status: str, reason: str = "") -> None:
            if status == "Finalizing" and self.training_ended_at is None:
                self.training_ended_at = time.monotonic()  # the parent's sampler uses the same clock
                self.training_peak_rss_mb = _common.peak_rss_mb()["self"]
            super().status(status, reason)

    recipe = TrainConfig(data=args.train, validation_data=args.val, architecture=args.architecture, weights="none",
                         image_size=args.image_size, epochs=1, seed=0, batch_size=args.batch_size)
    work = Path(args.workdir)
    reporter = Reporter()
    result = run_training(recipe, work / "run", reporter, cache_root=work / "cache", offline=True)
    if reporter.training_ended_at is None:
        raise SystemExit("error: the run never reported Finalizing, so the end of training is unknown.")
    _common.write_result(args.result, {"training_ended_at": reporter.training_ended_at,
                                       "peak_rss_mb": reporter.training_peak_rss_mb,
                                       "peak_rss_mb_with_export": _common.peak_rss_mb()["self"],
                                       "train_images": result.metrics["train_images"]})


def tree_peaks(result: dict[str, Any], sampler: _common.TreeMemorySampler) -> dict[str, Any]:
    """The sampled peaks of the child's tree in MiB: until training ended, and over the whole run."""
    ended = result["training_ended_at"]
    peaks: dict[str, Any] = {"processes": sampler.most_processes, "samples": len(sampler.samples)}
    for measure in ("pss", "uss", "rss"):
        peaks[measure] = sampler.peak_mb(measure, until=ended)
        peaks[f"{measure}_whole_run"] = sampler.peak_mb(measure)
    if peaks["uss"] is None:
        raise SystemExit("error: no memory sample was taken before training ended. Fix: train on more images "
                         "(--data) or a larger --image-size, so that training lasts longer than 0.1 s.")
    return peaks


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
            result, sampler = _common.run_side_sampled(
                Path(__file__), ["--train", str(folder), "--val", str(data.val), "--workdir", str(work / f"run{times}"),
                                 "--architecture", architecture, "--image-size", str(size),
                                 "--batch-size", str(args.batch_size)],
                _common.child_env(work / "home"), interval=SAMPLE_INTERVAL_S)
            results[times] = {**result, **tree_peaks(result, sampler)}
            shutil.rmtree(folder)
    report(results, args.times, architecture, size, args.batch_size)


def report(results: dict[int, dict[str, Any]], times: int, architecture: str, size: int, batch_size: int) -> None:
    small, large = results[1], results[times]
    headline = "pss" if small["pss"] is not None and large["pss"] is not None else "uss"

    def ratio(key: str) -> float | None:
        if small[key] is None or large[key] is None:
            return None
        return round(large[key] / small[key], 4)

    print(f"machine: {_common.machine()}; {architecture} at {size} px, batch {batch_size}, 1 epoch; the process "
          f"tree sampled every {SAMPLE_INTERVAL_S} s; headline: {headline.upper()} summed over the tree")
    for n, r in sorted(results.items()):
        pss = "n/a" if r["pss"] is None else f"{r['pss']:.0f}"
        pss_whole = "n/a" if r["pss_whole_run"] is None else f"{r['pss_whole_run']:.0f}"
        print(f"{n}x ({r['train_images']} training images, {r['processes']} process(es) at most): until training "
              f"ends PSS {pss} MiB, USS {r['uss']:.0f} MiB, summed RSS {r['rss']:.0f} MiB; with the ONNX export "
              f"PSS {pss_whole} MiB, USS {r['uss_whole_run']:.0f} MiB; the main process's own peak RSS "
              f"(kernel) {r['peak_rss_mb']:.0f} MiB until training ends, {r['peak_rss_mb_with_export']:.0f} with "
              f"the export")
    values = {"ratio": ratio(headline), "ratio_whole_run": ratio(f"{headline}_whole_run"), "ratio_uss": ratio("uss"),
              "ratio_pss": ratio("pss"), "ratio_rss_summed": ratio("rss")}
    print(f"{times}x / 1x = {values['ratio']:.3f} {headline.upper()} in training (USS {values['ratio_uss']:.3f}, "
          f"summed RSS {values['ratio_rss_summed']:.3f}), {values['ratio_whole_run']:.3f} for the whole run "
          f"(target: within 1.10)")
    out: dict[str, Any] = {"measure": headline}
    for n, key in ((1, "1x"), (times, f"{times}x")):
        r = results[n]
        out.update({f"peak_pss_mb_{key}": r["pss"], f"peak_uss_mb_{key}": r["uss"],
                    f"peak_rss_summed_mb_{key}": r["rss"], f"train_images_{key}": r["train_images"],
                    f"processes_{key}": r["processes"]})
    out.update(values)
    out.update({"architecture": architecture, "image_size": size})
    print(json.dumps(out))

if __name__ == "__main__":
    main()
