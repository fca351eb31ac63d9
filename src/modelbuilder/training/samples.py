"""What discovery finds: the images with their labels (`Sample`), the files passed over (`Skipped`), and the
one order every source of data is put in (`walk_key`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath

TRAIN, VALIDATION = "train", "validation"  # the sides a manifest line may name


LABELS_JOINED = ";"  # a multi-label image's `label`: its labels joined by this


@dataclass(frozen=True)
class Sample:
    """One image and its label. A manifest may also say which side of the split it belongs on (`split`), and
    gives the line it came from (`line`). `labels` holds the labels of a line written in multi-label form (a
    list in JSONL, a Labels column), `label` then being them joined by ';'."""

    path: Path
    label: str
    split: str | None = None
    line: int | None = None
    labels: tuple[str, ...] = ()
    name: str | None = None  # what reports call it where the file has another name (a data asset's SHA-256)

    @classmethod
    def of(cls, path: Path, labels: tuple[str, ...], split: str | None = None, line: int | None = None,
           listed: bool = False, name: str | None = None) -> Sample:
        return cls(path, LABELS_JOINED.join(labels), split, line, labels if listed or len(labels) > 1 else (), name)

    @property
    def all_labels(self) -> tuple[str, ...]:
        return self.labels or (self.label,)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    line: int | None = None  # the manifest line that named the file, where one did


def walk_key(relative: PurePath) -> tuple[tuple[int, str], ...]:
    """The order a sorted folder walk visits `relative` in: at each level a folder's files (by name) come
    before its sub-folders (by name). Samples of every source are put in this order, so a manifest that
    lists a folder's images, in any order, yields them as the folder does."""
    parts = relative.parts
    return tuple((1, part) for part in parts[:-1]) + ((0, parts[-1]),)
