"""Preparation: find, check, decode (once, cached) and split the data, and report on it before training.

Every error here comes before any training. The data report (`data.DataReport`, saved as
data_report.json) gets the files skipped and why, the images per label and split, the label balance and
the exact and near duplicates (within a label, across labels, across the split); training adds the
likely wrong labels and the overfitting check to it later (`finalize.finalize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelbuilder.errors import DataError
from modelbuilder.results.runtime import Preprocess
from modelbuilder.training import data as data_mod
from modelbuilder.training.balance import balance_finding
from modelbuilder.training.cache import build_decoded_cache
from modelbuilder.training.duplicates import (
    TRAINING,
    VALIDATION,
    DataImage,
    Fingerprints,
    find_duplicates,
    fingerprint,
)
from modelbuilder.training.loop import Split
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import Progress, Reporter


@dataclass(frozen=True)
class PreparedData:
    train: Split
    val: Split
    labels: list[str]
    task: str  # multiclass: targets are label indices; multilabel: rows of 0/1, one column per label
    image_size: int
    report: data_mod.DataReport
    sample_image: Path
    train_images: list[DataImage]  # each training record's path (relative to its data), label and split
    val_images: list[DataImage]


def _base(source: str) -> Path:
    root = Path(source).expanduser().resolve()
    return root if root.is_dir() else root.parent


def _shown(sample: data_mod.Sample, base: Path) -> str:
    """What reports call a sample: its name where the data gives one, else its path relative to the data."""
    if sample.name:
        return sample.name
    return str(sample.path.relative_to(base)) if sample.path.is_relative_to(base) else str(sample.path)


def _decode(source: str, size: int, cache_root: Path, reporter: Reporter, threads: int | None,
            found: tuple[list[data_mod.Sample], list[data_mod.Skipped]] | None = None,
            ) -> tuple[list[data_mod.Sample], list[data_mod.Skipped], Any]:
    """Discover (unless already done) and decode `source`; skipped files come back with their reason."""
    samples, skipped = found if found is not None else data_mod.discover(source)
    skipped = list(skipped)
    paths = [s.path for s in samples]
    reporter.log(f"Decoding {len(paths)} images of {source} into the decoded cache ({size}x{size} px, "
                 "once; later runs reuse it).")
    cache = build_decoded_cache(
        paths, size, cache_root, threads,
        lambda done, total: reporter.progress(Progress("preparing", 0, 0, done, total)))
    base = _base(source)
    for i, reason in sorted(cache.reasons.items()):
        line = samples[i].line
        where = f"line {line} of {Path(source).name}: " if line else ""
        skipped.append(data_mod.Skipped(_shown(samples[i], base), where + reason, line))
    return samples, skipped, cache


def prepare_data(recipe: TrainConfig, cache_root: Path, reporter: Reporter, *, check_duplicates: bool = True
                 ) -> PreparedData:
    """Find, check, decode (once, cached) and split the data, and check it for duplicates (unless
    `check_duplicates` is False: a split made again for another purpose, such as an int8 export) and balance."""
    found = data_mod.discover(recipe.data)
    task = data_mod.task_of(found[0], recipe.task)
    recipe.check_task(task)
    data_mod.check_labels(found[0], recipe.data, task)
    image_size = recipe.image_size or data_mod.choose_image_size([s.path for s in found[0]], seed=recipe.seed)
    resize = Preprocess.resize_for(image_size)
    samples, skipped, cache = _decode(recipe.data, resize, cache_root, reporter, recipe.loader_threads, found)
    usable = [i for i in range(len(samples)) if cache.ok(i)]
    labels = data_mod.check_labels([samples[i] for i in usable], recipe.data, task)
    targets = _targets([samples[i] for i in usable], labels, task)
    report = data_mod.DataReport(source=str(recipe.data), labels=labels, skipped=skipped, image_size=image_size)
    v_samples, v_source = samples, recipe.data
    if recipe.validation_data:
        marked = next((samples[i] for i in usable if samples[i].split == data_mod.VALIDATION), None)
        if marked is not None:
            raise DataError(f"Line {marked.line} of {recipe.data!r} marks an image for validation, and "
                            f"--validation-data {recipe.validation_data!r} is given too.",
                            "use one of the two: the manifest's split, or the separate validation data.")
        v_source = recipe.validation_data
        v_samples, v_skipped, v_cache = _decode(recipe.validation_data, resize, cache_root, reporter,
                                                recipe.loader_threads)
        v_usable = [i for i in range(len(v_samples)) if v_cache.ok(i)]
        unknown = sorted({label for i in v_usable for label in _labels_of(v_samples[i], task)} - set(labels))
        if unknown:
            raise DataError(f"The validation data has labels the training data lacks: {', '.join(unknown[:5])}.",
                            "use the same label folders in both, or drop those images from the validation data.")
        if not v_usable:
            raise DataError(f"No usable images in the validation data {recipe.validation_data!r}.",
                            "check its images (see the data report) or use --validation-fraction instead.")
        train = Split(cache, np.array(usable), targets)
        v_targets = _targets([v_samples[i] for i in v_usable], labels, task)
        val = Split(v_cache, np.array(v_usable), v_targets)
        report.skipped += v_skipped
        report.validation_source = str(recipe.validation_data)
    elif any(samples[i].split == data_mod.VALIDATION for i in usable):
        train, val = _named_split(cache, usable, targets, samples, recipe.data)
        report.validation_source = f"the manifest's split ({len(val)} images marked validation)"
    else:
        train_idx, val_idx = (data_mod.stratified_split(targets.tolist(), recipe.validation_fraction, recipe.seed)
                              if task == data_mod.MULTICLASS else
                              data_mod.random_split(len(targets), recipe.validation_fraction, recipe.seed))
        if not val_idx:
            raise DataError("Too few images to hold some out for validation (every label has only one).",
                            "add images (two or more per label) or pass --validation-data.")
        records = np.array(usable)
        train = Split(cache, records[train_idx], targets[train_idx])
        val = Split(cache, records[val_idx], targets[val_idx])
        report.validation_source = (f"{'stratified' if task == data_mod.MULTICLASS else 'random'} split "
                                    f"{recipe.validation_fraction} (seed {recipe.seed})")
    report.train_images, report.validation_images = len(train), len(val)
    report.train_per_label = dict(zip(labels, images_per_label(train.targets, len(labels)), strict=True))
    report.validation_per_label = dict(zip(labels, images_per_label(val.targets, len(labels)), strict=True))
    report.balance = balance_finding(report.train_per_label, recipe.class_weights, task == data_mod.MULTILABEL)
    images = {}
    for side, split, side_samples, source in ((TRAINING, train, samples, recipe.data),
                                              (VALIDATION, val, v_samples, v_source)):
        base = _base(source)
        images[side] = [DataImage(_shown(side_samples[int(r)], base), side_samples[int(r)].label, side)
                        for r in split.records]
    if check_duplicates:
        report.duplicates = _duplicates(train, val, samples, v_samples, images[TRAINING] + images[VALIDATION],
                                        reporter)
    sample = v_samples[int(val.records[0])].path
    return PreparedData(train, val, labels, task, image_size, report, sample, images[TRAINING], images[VALIDATION])


def _labels_of(sample: data_mod.Sample, task: str) -> tuple[str, ...]:
    return sample.all_labels if task == data_mod.MULTILABEL else (sample.label,)


def _targets(samples: list[data_mod.Sample], labels: list[str], task: str) -> np.ndarray:
    """Label indices (multi-class), or rows of 0/1 with a column per label (multi-label)."""
    index = {label: k for k, label in enumerate(labels)}
    if task != data_mod.MULTILABEL:
        return np.array([index[s.label] for s in samples], dtype=np.int64)
    rows = np.zeros((len(samples), len(labels)), dtype=np.float32)
    for i, sample in enumerate(samples):
        rows[i, [index[label] for label in sample.all_labels]] = 1.0
    return rows


def images_per_label(targets: np.ndarray, num_labels: int) -> list[int]:
    """How many images carry each label (label indices or multi-label rows)."""
    if targets.ndim == 2:
        return targets.sum(0).astype(np.int64).tolist()
    return np.bincount(targets, minlength=num_labels).tolist()


def _named_split(cache: Any, usable: list[int], targets: np.ndarray, samples: list[data_mod.Sample], source: str,
                 ) -> tuple[Split, Split]:
    """Training and validation as the manifest's lines say (`split`); lines without one are training images."""
    side = np.array([samples[i].split == data_mod.VALIDATION for i in usable])
    records = np.array(usable)
    if side.all():
        raise DataError(f"Every image of {source!r} is marked for validation; none is left to train on.",
                        "mark some lines 'train' (or leave their split out).")
    return Split(cache, records[~side], targets[~side]), Split(cache, records[side], targets[side])


def _duplicates(train: Split, val: Split, samples: list[data_mod.Sample], v_samples: list[data_mod.Sample],
                images: list[DataImage], reporter: Reporter) -> dict[str, Any]:
    reporter.log(f"Looking for exact and near duplicates among {len(images)} images.")
    prints = [fingerprint([s[int(r)].path for r in split.records], split.cache, split.records)
              for split, s in ((train, samples), (val, v_samples))]
    joined = Fingerprints(prints[0].digest + prints[1].digest, np.concatenate([p.phash for p in prints]),
                             np.concatenate([p.dhash for p in prints]))
    return find_duplicates(images, joined)
