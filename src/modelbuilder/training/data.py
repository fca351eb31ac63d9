"""Training data: find the images and their labels, check them, split them, report on them.

Two layouts are accepted: a folder with one sub-folder per label, or a manifest (`manifest.py`: a
`.tsv`/`.csv` with `ImageSource` and `Label` columns, or AutoML's `.jsonl`; paths relative to it).
Every mistake that would make training pointless (missing path, no images, one label, a bad manifest, a
path that escapes its folder) is an error here, before any image is decoded. Files that cannot be decoded
are skipped and listed in the data report, never fatal on their own.
"""

from __future__ import annotations

import os
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from modelbuilder.errors import DataError
from modelbuilder.results.runtime import IMAGE_FORMATS, InvalidImageError, load_image
from modelbuilder.training.manifest import MANIFEST_SUFFIXES, read_manifest
from modelbuilder.training.recipe import AUTO, MULTICLASS, MULTILABEL
from modelbuilder.training.samples import TRAIN as TRAIN  # re-exported: callers know data.Sample and the rest
from modelbuilder.training.samples import VALIDATION as VALIDATION
from modelbuilder.training.samples import Sample as Sample
from modelbuilder.training.samples import Skipped as Skipped

SPLIT_FOLDER_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


@dataclass
class DataReport:
    """What was found in the data and what was done with it; saved as `data_report.json`."""

    source: str
    labels: list[str] = field(default_factory=list)
    train_per_label: dict[str, int] = field(default_factory=dict)
    validation_per_label: dict[str, int] = field(default_factory=dict)
    validation_source: str = ""  # "split 0.2 (seed 0)" or the path of --validation-data
    train_images: int | None = None  # images on each side (None: the sum per label; multi-label images count once)
    validation_images: int | None = None
    skipped: list[Skipped] = field(default_factory=list)
    image_size: int | None = None
    balance: dict[str, Any] | None = None  # balance.balance_finding, at preparation
    duplicates: dict[str, Any] | None = None  # duplicates.find_duplicates, at preparation
    suspects: dict[str, Any] | None = None  # suspects.suspects_finding, after training
    overfitting: dict[str, Any] | None = None  # suspects.overfitting_finding, after training

    def summary(self) -> list[dict[str, str]]:
        """One line per finding, with its counts: what the CLI prints and the portal's data tab shows."""
        lines: list[dict[str, str]] = []

        def add(topic: str, warn: bool, text: str, fix: str | None = None) -> None:
            lines.append({"topic": topic, "level": "warning" if warn else "ok", "text": text, "fix": fix or ""})

        if self.skipped:
            add("skipped", True, f"Skipped files: {len(self.skipped)} could not be used (each with its reason in "
                "the report's list).")
        if self.balance:
            b = self.balance
            weighted = f"; loss weighted by label ({b['class_weights']})" if b["class_weights"] != "none" else ""
            add("balance", bool(b["warning"]), f"Label balance: smallest {b['smallest']['label']!r} "
                f"{b['smallest']['images']}, largest {b['largest']['label']!r} {b['largest']['images']} training "
                f"images (ratio {b['ratio']:.2f}){weighted}." + (f" {b['warning']}" if b["warning"] else ""), b["fix"])
        if self.duplicates:
            d = self.duplicates
            add("duplicates", False, f"Duplicates within a label: {d['within_label']} pairs "
                f"({d['within_label_exact']} exact) among {d['checked_images']} images.")
            add("conflicts", d["across_labels"] > 0, f"Labelling conflicts: {d['across_labels']} pairs of copies "
                "filed under two labels.", "keep each image under its one right label." if d["across_labels"] else "")
            add("leaks", d["across_split"] > 0, f"Leaks: {d['across_split']} pairs of copies on both sides of the "
                "training/validation split.", "remove the copies from one side; they inflate the validation score."
                if d["across_split"] else "")
        if self.suspects:
            s = self.suspects
            add("suspects", s["count"] > 0, f"Likely wrong labels: {s['count']} of {s['checked_images']} images"
                + (f" ({s['note']})." if s.get("note") else "."), "look at them (the suspects gallery) and move "
                "the wrongly filed ones." if s["count"] else "")
        if self.overfitting:
            o = self.overfitting
            add("overfitting", bool(o["warning"]), o["warning"] or f"Overfitting: none seen (training accuracy "
                f"{o['train_accuracy']:.3f}, validation {o['val_accuracy']:.3f} at epoch {o['epoch']}).", o["fix"])
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "labels": self.labels,
            "train_images": sum(self.train_per_label.values()) if self.train_images is None else self.train_images,
            "validation_images": sum(self.validation_per_label.values()) if self.validation_images is None else
            self.validation_images,
            "train_per_label": self.train_per_label,
            "validation_per_label": self.validation_per_label,
            "validation_source": self.validation_source,
            "image_size": self.image_size,
            "skipped": [{"path": s.path, "reason": s.reason, **({"line": s.line} if s.line else {})}
                        for s in self.skipped],
            "summary": self.summary(),
            "balance": self.balance,
            "duplicates": self.duplicates,
            "suspects": self.suspects,
            "overfitting": self.overfitting,
        }


def discover(source: str | os.PathLike[str]) -> tuple[list[Sample], list[Skipped]]:
    """All candidate images with their labels, and the files passed over (with why)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"Training data {str(path)!r} does not exist.",
                        "give the path of a folder with one sub-folder per label, or of a .tsv/.csv/.jsonl manifest.")
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise DataError(f"Training data {str(path)!r} is a file but not a .tsv, .csv or .jsonl manifest.",
                            "pass a folder with one sub-folder per label, a .tsv/.csv manifest with "
                            'ImageSource and Label columns, or a .jsonl one of {"image_url": ..., "label": ...}.')
        return read_manifest(path)
    return _read_folder(path)


def _read_folder(root: Path) -> tuple[list[Sample], list[Skipped]]:
    root = root.resolve()
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except PermissionError:
        raise DataError(f"Cannot read the folder {str(root)!r}: permission denied.",
                        "make it readable by this user.") from None
    label_dirs = [e for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    for entry in entries:
        if entry.is_symlink() and entry.is_dir():
            skipped.append(Skipped(entry.name + "/", "symbolic link to a folder (not followed)"))
        elif entry.is_file() and not entry.name.startswith("."):
            skipped.append(Skipped(entry.name, "file outside any label folder"))
    if not label_dirs:
        raise DataError(f"The folder {str(root)!r} has no label sub-folders.",
                        "put the images of each label in a sub-folder named after it (data/cat/1.jpg).")
    names = {d.name.lower() for d in label_dirs}
    if names <= SPLIT_FOLDER_NAMES and len(names) >= 2:
        raise DataError(f"The folder {str(root)!r} looks split already ({', '.join(sorted(names))}).",
                        f"give {str(root / label_dirs[0].name)!r} as the data and the other part as the "
                        "validation data.")
    for label_dir in label_dirs:
        samples_here, skipped_here = _walk_label(root, Path(label_dir.path), label_dir.name)
        samples += samples_here
        skipped += skipped_here
    return samples, skipped


def _walk_label(root: Path, folder: Path, label: str) -> tuple[list[Sample], list[Skipped]]:
    samples, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    skipped.append(Skipped(rel, "broken or looping symbolic link"))
                    continue
                if not target.is_relative_to(root):
                    skipped.append(Skipped(rel, "symbolic link to a file outside the data folder"))
                    continue
            samples.append(Sample(path, label))
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                skipped.append(Skipped(str((Path(dirpath) / d).relative_to(root)) + "/",
                                       "symbolic link to a folder (not followed)"))
    return samples, skipped


def task_of(samples: list[Sample], task: str) -> str:
    """The task a recipe's `task` means for these samples: `auto` is multi-label where the data is written in
    multi-label form (a Labels column, JSONL labels as lists), else multi-class."""
    if task != AUTO:
        return task
    return MULTILABEL if any(s.labels for s in samples) else MULTICLASS


def check_labels(samples: list[Sample], source: str, task: str = MULTICLASS) -> list[str]:
    several = next((s for s in samples if len(s.labels) > 1), None)
    if several is not None and task == MULTICLASS:
        raise DataError(f"Line {several.line} of {source!r} gives an image several labels "
                        f"({', '.join(several.labels)}); this training is multi-class, one label per image.",
                        "give each image one label, or train with --task multilabel.")
    labels = sorted({label for s in samples for label in s.all_labels}) if task == MULTILABEL else sorted(
        {s.label for s in samples})
    if not samples:
        raise DataError(f"No images found in {source!r}.",
                        "add JPEG, PNG, BMP, GIF, TIFF or WebP files under one sub-folder per label.")
    if len(labels) < 2:
        raise DataError(f"Only one label ({labels[0]!r}) found in {source!r}; a classifier needs at least two.",
                        "add a sub-folder (or manifest rows) for at least one more label.")
    return labels


def check_readable(samples: list[Sample], source: str) -> list[str]:
    """The labels that have at least one image that decodes; a DataError when fewer than two do.

    Each label's files are tried in order until one decodes, so good data costs one decode per label.
    Unreadable files beside readable ones are not an error: training skips them and lists them in
    the data report.
    """
    by_label: dict[str, list[Path]] = {}
    for sample in samples:
        for label in sample.all_labels:
            by_label.setdefault(label, []).append(sample.path)
    readable, reason = [], ""
    for label, paths in sorted(by_label.items()):
        for path in paths:
            try:
                load_image(path, draft_size=8)
            except InvalidImageError as unreadable:
                reason = reason or unreadable.reason
                continue
            readable.append(label)
            break
    if not readable:
        raise DataError(f"None of the {len(samples)} files in {source!r} can be read as an image (the first: "
                        f"{reason}).", f"use {IMAGE_FORMATS} files, one sub-folder per label.")
    if len(readable) < 2:
        others = ", ".join(repr(label) for label in sorted(by_label) if label not in readable)
        raise DataError(f"Only the label {readable[0]!r} of {source!r} has images that can be read; a classifier "
                        "needs at least two.", f"replace the files of {others[:200]} with {IMAGE_FORMATS} images.")
    return readable


def choose_image_size(paths: list[Path], sample_limit: int = 200, seed: int = 0) -> int:
    """Median short side of a sample of the images, rounded up to a multiple of 32, in [32, 224].

    Upscaling 8-px digits to 224 px would cost 49x the compute for no gain; photos get 224.
    """
    rng = random.Random(seed)
    picked = paths if len(paths) <= sample_limit else rng.sample(paths, sample_limit)
    sides = []
    for path in picked:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except Exception:  # noqa: BLE001 - unreadable files are reported when they are decoded
            continue
    if not sides:
        return 224
    median = statistics.median(sides)
    return int(min(224, max(32, -(-median // 32) * 32)))


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices for training and validation: `fraction` of every label (at least one where a label has
    two or more images), chosen with a seeded shuffle so the same data and seed give the same split."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    train, val = [], []
    for y in sorted(by_label):
        idx = by_label[y]
        rng.shuffle(idx)
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction))) if len(idx) >= 2 else 0
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)


def random_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices for training and validation, `fraction` held out by a seeded shuffle (multi-label data, whose
    images have no one label to stratify by); at least one image each side where there are two."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = min(n - 1, max(1, round(n * fraction))) if n >= 2 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def per_label(labels: list[str], indices: list[int], targets: list[int]) -> dict[str, int]:
    counts = Counter(targets[i] for i in indices)
    return {name: counts.get(k, 0) for k, name in enumerate(labels)}
