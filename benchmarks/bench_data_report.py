"""The data report against planted problems: wrongly filed images and copies across the split.

A seeded copy of a folder-per-label set (default: shared/datasets/trashnet) is split into train/ and
val/ with the trainer's own stratified split; then `--move-fraction` of all images (default 5 %) are
moved into another label's folder (seeded), and `--leaks` training images (default 10) are copied into
the validation side. Preparation and a short training follow (`run_training`, the recipe below), and
the script prints

- how many of the planted cross-split copies the report found (and how many other cross-split pairs
  the original set has),
- how many of the moved images are among the top-ranked label suspects, as many as were moved,
- the labelling conflicts the report found among the original images (trashnet files 3 photos under
  two labels).

With --compare-class-weights it instead trains the unmodified split three times, with class_weights none,
sqrt and balanced, and prints each accuracy and the recall of the smallest label (the issue's check:
balanced should raise that recall without lowering accuracy by more than 0.01).

The recipe is short on purpose and set by arguments: --architecture (default resnet18), --image-size
(96), --epochs (12), --weights (auto: ImageNet weights when present, else random initialisation),
--mode, and any setting with --set KEY=VALUE. The last line printed is one JSON object.

    python benchmarks/bench_data_report.py [--data DIR] [--seed N] [--move-fraction F] [--leaks N]
        [--architecture A] [--image-size PX] [--epochs N] [--weights auto|none] [--mode auto|full|head]
        [--set KEY=VALUE ...] [--compare-class-weights] [--original-conflicts]

With --original-conflicts it only prepares the unmodified data (no training) and prints every pair of
copies filed under two labels that the report finds (the planted run leaves out pairs that touch a moved
or copied image).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script

TRASHNET = _common.SHARED_DATASETS / "trashnet"


@dataclass
class Planted:
    train: Path
    val: Path
    moved: set[tuple[str, str]]  # (split, path relative to its side) of every moved image, where it now is
    leaks: set[tuple[str, str]]  # (training path, validation path) of every planted copy


def split_copy(source: Path, work: Path, seed: int) -> tuple[Path, Path]:
    """train/ and val/ copies of `source`, split as the trainer splits (stratified, 0.2, seeded)."""
    from modelbuilder.training.data import discover, stratified_split

    samples, _ = discover(source)
    labels = sorted({s.label for s in samples})
    train_idx, val_idx = stratified_split([labels.index(s.label) for s in samples], 0.2, seed)
    for side, indices in (("train", train_idx), ("val", val_idx)):
        for i in indices:
            target = work / side / samples[i].label / samples[i].path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(samples[i].path, target)
    return work / "train", work / "val"


def plant(source: Path, work: Path, move_fraction: float, leaks: int, seed: int) -> Planted:
    train, val = split_copy(source, work, seed)
    rng = random.Random(seed)
    labels = sorted(p.name for p in train.iterdir() if p.is_dir())
    images = sorted((side, path) for side, root in (("training", train), ("validation", val))
                    for path in root.glob("*/*") if path.is_file())
    chosen = rng.sample(images, round(len(images) * move_fraction))
    moved = set()
    for side, path in chosen:
        wrong = rng.choice([label for label in labels if label != path.parent.name])
        target = path.parent.parent / wrong / f"from-{path.parent.name}-{path.name}"
        path.rename(target)
        moved.add((side, f"{wrong}/{target.name}"))
    kept = sorted(path for path in train.glob("*/*") if ("training", f"{path.parent.name}/{path.name}") not in moved)
    planted = set()
    for path in rng.sample(kept, leaks):
        copy = val / path.parent.name / f"copy-of-{path.name}"
        shutil.copy2(path, copy)
        planted.add((f"{path.parent.name}/{path.name}", f"{path.parent.name}/{copy.name}"))
    return Planted(train, val, moved, planted)


def train(data: Path, val: Path, args: argparse.Namespace, work: Path, **changes: Any) -> tuple[Any, float]:
    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    settings = {"data": str(data), "validation_data": str(val), "architecture": args.architecture,
                "image_size": args.image_size, "epochs": args.epochs, "weights": args.weights, "mode": args.mode,
                "seed": args.seed, "name": "Bench", **_set_pairs(args.set), **changes}
    started = time.perf_counter()
    result = run_training(TrainConfig.from_dict(settings), work / f"run-{len(list(work.glob('run-*')))}",
                          MemoryReporter(), cache_root=work / "cache")
    return result, time.perf_counter() - started


def _set_pairs(pairs: list[str]) -> dict[str, Any]:
    import yaml

    values = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        values[key.strip()] = yaml.safe_load(value)
    return values


def check_report(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    planted = plant(args.data, work, args.move_fraction, args.leaks, args.seed)
    _common.log(f"moved {len(planted.moved)} images to a wrong label, copied {len(planted.leaks)} training images "
                "into the validation side; training...")
    result, wall = train(planted.train, planted.val, args, work)
    report = json.loads((result.run_dir / "data_report.json").read_text())
    pairs = report["duplicates"]["pairs"]
    cross = {(p["images"][0]["path"], p["images"][1]["path"]) if p["images"][0]["split"] == "training"
             else (p["images"][1]["path"], p["images"][0]["path"]) for p in pairs if p["across_split"]}
    found_leaks = planted.leaks & cross
    suspects = report["suspects"]["suspects"]
    top = {(row["split"], row["path"]) for row in suspects[:len(planted.moved)]}
    moved_in_top = planted.moved & top
    planted_paths = {path for pair in planted.leaks for path in pair} | {path for _, path in planted.moved}
    conflicts = [[f"{i['split']}:{i['path']}" for i in p["images"]] for p in pairs
                 if p["across_labels"] and not {i["path"] for i in p["images"]} & planted_paths]
    print(f"cross-split copies: {len(found_leaks)} of {len(planted.leaks)} planted found "
          f"({report['duplicates']['across_split'] - len(found_leaks)} other cross-split pairs in the set)")
    print(f"moved images among the top {len(planted.moved)} suspects: {len(moved_in_top)} of {len(planted.moved)} "
          f"({len(moved_in_top) / max(1, len(planted.moved)):.2f}); {report['suspects']['count']} flagged in all")
    print(f"labelling conflicts among the original images: {len(conflicts)}")
    for conflict in conflicts:
        print(f"  {' <-> '.join(conflict)}")
    return {"moved": len(planted.moved), "moved_in_top_suspects": len(moved_in_top),
            "moved_in_top_fraction": round(len(moved_in_top) / max(1, len(planted.moved)), 4),
            "suspects_flagged": report["suspects"]["count"], "leaks_planted": len(planted.leaks),
            "leaks_found": len(found_leaks), "other_cross_split_pairs": report["duplicates"]["across_split"]
            - len(found_leaks), "original_conflicts": len(conflicts), "accuracy": round(result.metrics["accuracy"], 4),
            "wall_s": round(wall, 2)}


def compare_class_weights(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    train_dir, val_dir = split_copy(args.data, work, args.seed)
    out: dict[str, Any] = {}
    for kind in ("none", "sqrt", "balanced"):
        _common.log(f"training with class_weights {kind}...")
        result, wall = train(train_dir, val_dir, args, work, class_weights=kind)
        report = json.loads((result.run_dir / "data_report.json").read_text())
        smallest = report["balance"]["smallest"]["label"]
        recall = next(row["recall"] for row in result.metrics["per_label"] if row["label"] == smallest)
        print(f"class_weights {kind}: accuracy {result.metrics['accuracy']:.4f}, macro recall "
              f"{result.metrics['macro_recall']:.4f}, recall of the smallest label {smallest!r} {recall:.4f} "
              f"({wall:.0f} s)")
        out.update({f"{kind}_accuracy": round(result.metrics["accuracy"], 4), f"{kind}_smallest_recall":
                    round(recall, 4), f"{kind}_macro_recall": round(result.metrics["macro_recall"], 4),
                    f"{kind}_wall_s": round(wall, 2), "smallest_label": smallest})
    for kind, prefix in (("balanced", ""), ("sqrt", "sqrt_")):
        out[f"{prefix}smallest_recall_delta"] = round(out[f"{kind}_smallest_recall"] - out["none_smallest_recall"], 4)
        out[f"{prefix}accuracy_delta"] = round(out[f"{kind}_accuracy"] - out["none_accuracy"], 4)
        print(f"{kind} - none: recall of {out['smallest_label']!r} {out[f'{prefix}smallest_recall_delta']:+.4f}, "
              f"accuracy {out[f'{prefix}accuracy_delta']:+.4f}")
    return out


def original_conflicts(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from modelbuilder.training.prepare import prepare_data
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    recipe = TrainConfig(data=str(args.data), image_size=args.image_size, weights="none", seed=args.seed)
    duplicates = prepare_data(recipe, work / "cache", MemoryReporter()).report.duplicates
    conflicts = [[f"{i['split']}:{i['path']}" for i in p["images"]] for p in duplicates["pairs"] if p["across_labels"]]
    print(f"labelling conflicts in the unmodified data: {len(conflicts)} (of {duplicates['checked_images']} images)")
    for conflict in conflicts:
        print(f"  {' <-> '.join(conflict)}")
    return {"original_conflicts": len(conflicts), "checked_images": duplicates["checked_images"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=TRASHNET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--move-fraction", type=float, default=0.05)
    parser.add_argument("--leaks", type=int, default=10)
    parser.add_argument("--architecture", default="resnet18")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compare-class-weights", action="store_true")
    parser.add_argument("--original-conflicts", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"no data set at {args.data}; pass --data DIR (one sub-folder per label)")
    print(f"machine: {_common.machine()}; data: {args.data}")
    with tempfile.TemporaryDirectory(prefix="bench-data-report-") as tmp:
        chosen = (compare_class_weights if args.compare_class_weights else
                  original_conflicts if args.original_conflicts else check_report)
        result = chosen(args, Path(tmp))
    print(json.dumps({"data": str(args.data), "seed": args.seed, **result}))


if __name__ == "__main__":
    main()
