"""Manifests: training data described by a table of image paths instead of label folders.

Two kinds are read, both with paths relative to the manifest's own folder:

- `.tsv` / `.csv` with the columns `ImageSource` and `Label` (or `Labels`: several labels of one image,
  separated by `;` or by `,` inside quotes), and optional `Split` and `Name` columns (`Name`: what reports
  call the image, where its file is named otherwise, as a data asset stores each image under its SHA-256);
- `.jsonl` as Azure AutoML writes it: one `{"image_url": "...", "label": "cat"}` per line (a list of
  labels for several), with an optional `"split"`. `image_url` may be a path or a `file://` URI.

A mistake in the manifest itself (a missing column, an empty label, an unknown split, a URL, a path that
leaves the manifest's folder, a line that is not JSON) is an error naming its line: nothing is fetched
from a network, and nothing outside the manifest's folder is read. A line that points at a file that does
not exist is not an error on its own: it is skipped and listed, with its line number, in the data report.

Batch scoring (`sdk/scoring.py`) reads manifests through `read_rows(manifest, to_score=True)`: the same
columns, the same URL refusal and the same file:// decoding, with three rules of training's left out, for
what scoring is. A label is optional (scoring predicts it; one given is carried to compare with); a split
is not read (every line is scored, a `test` split included); and a path may leave the manifest's folder
(training keeps to it because its data is packed and uploaded with each image at its path relative to that
folder, then read by a server; scoring reads the user's own files on the user's machine, as it does for a
folder or an image).

Samples come back in one canonical order whatever the order of the lines (that of a folder walk over
their paths, see `walk_key`), so the same images give the same split and the same batches whether
they are listed in a folder, a CSV or a JSONL manifest.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from modelbuilder.errors import DataError
from modelbuilder.training.samples import TRAIN, VALIDATION, Sample, Skipped, walk_key

MANIFEST_SUFFIXES = (".tsv", ".csv", ".jsonl")
SPLIT_NAMES = {"train": TRAIN, "training": TRAIN, "validation": VALIDATION, "valid": VALIDATION,
               "val": VALIDATION}
LABEL_SEPARATORS = re.compile(r"[;,]")  # between the labels of one image in a Labels column
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_FIX_URL = ("download the images next to the manifest and write their paths relative to it (or as file:// "
            "URIs); modelbuilder reads local files only.")


@dataclass(frozen=True)
class ManifestRow:
    """One line of a manifest that names an image: the file it names (which may not exist), its labels (none
    where a line to score gives none), its split, and whether its labels are in multi-label form (`listed`)."""

    line: int
    path: Path
    labels: tuple[str, ...]
    split: str | None
    listed: bool
    name: str | None = None  # what to call the image where its file is stored under another name


class _Lines:
    """Where a manifest's lines are read from, for errors that name the line, and by which rules (`to_score`:
    see the module's docstring)."""

    def __init__(self, manifest: Path, to_score: bool) -> None:
        self.manifest, self.base, self.to_score = manifest, manifest.parent.resolve(), to_score

    def error(self, line: int, what: str, fix: str) -> DataError:
        return DataError(f"Line {line} of {str(self.manifest)!r} {what}.", fix)

    def path_of(self, line: int, raw: str) -> Path:
        """The file a line names (a relative path or a file:// URI), refused when it is a URL of another scheme
        or, to train on, leaves the manifest's folder."""
        url = _URL.match(raw)
        if url and url.group(1).lower() != "file":
            raise self.error(line, f"names a URL ({raw[:120]!r}) and no network is fetched", _FIX_URL)
        if url:
            parsed = urlparse(raw)
            if parsed.netloc not in ("", "localhost"):
                raise self.error(line, f"names a file on another host ({raw[:120]!r})", _FIX_URL)
            raw = unquote(parsed.path)
        path = Path(os.path.normpath(self.base / raw))
        if self.to_score:
            return path
        if (Path(raw).is_absolute() and not url) or not path.is_relative_to(self.base) or not _stays_inside(
                path, self.base):
            raise self.error(line, f"points outside its folder: {raw!r}",
                             f"keep every image under {str(self.base)!r} and write paths relative to the manifest.")
        return path

    def split_of(self, line: int, value: Any) -> str | None:
        if value is None or value == "" or self.to_score:
            return None
        split = SPLIT_NAMES.get(str(value).strip().lower()) if isinstance(value, str) else None
        if split is None:
            raise self.error(line, f"names an unknown split {value!r}",
                             "use 'train' or 'validation' (or leave the split out and let the seeded split choose).")
        return split

    def labels_of(self, line: int, value: Any, listed: bool) -> tuple[str, ...]:
        """The labels a line gives: a text (one label, or several separated when `listed`), or a list of texts;
        to score, none where it gives none."""
        if self.to_score and (value is None or (isinstance(value, str) and not value.strip())):
            return ()
        if isinstance(value, str):
            labels = [value] if not listed else LABEL_SEPARATORS.split(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            labels = value
        else:
            raise self.error(line, f"has a label that is neither a text nor a list of texts ({value!r})",
                             'write "label": "cat", or "label": ["beach", "sunset"] for several.')
        labels = [label.strip() for label in labels]
        if not labels or not all(labels):
            raise self.error(line, "has an empty label", "give every image its label (or labels); drop the line "
                             "of an image without one.")
        return tuple(dict.fromkeys(labels))


def _stays_inside(path: Path, base: Path) -> bool:
    """True when `path`, with symlinks resolved (where it exists), is still under `base`."""
    try:
        return path.resolve().is_relative_to(base)
    except (OSError, RuntimeError):
        return True  # a missing or looping file is skipped later, with its reason


def read_rows(manifest: Path, *, to_score: bool = False) -> list[ManifestRow]:
    """Every line of `manifest` that names an image, in the manifest's order, by training's rules or, with
    `to_score`, by batch scoring's (see the module's docstring). Whether the files exist is left to the caller."""
    lines = _Lines(manifest, to_score)
    rows = _jsonl_rows(lines) if manifest.suffix.lower() == ".jsonl" else _table_rows(lines)
    return [ManifestRow(line, lines.path_of(line, raw_path), labels, split, listed, name)
            for line, raw_path, labels, split, listed, name in rows]


def read_manifest(manifest: Path) -> tuple[list[Sample], list[Skipped]]:
    """The samples a manifest lists (in canonical order) and the lines skipped for a missing file."""
    base = manifest.parent.resolve()
    samples, skipped = [], []
    for row in read_rows(manifest):
        if not row.path.is_file():
            rel = str(row.path.relative_to(base))
            skipped.append(Skipped(rel, f"line {row.line} of {manifest.name}: file not found", row.line))
            continue
        samples.append(Sample.of(row.path, row.labels, row.split, row.line, row.listed, row.name))
    samples.sort(key=lambda s: walk_key(s.path.relative_to(base)))
    if not samples and skipped:
        first = skipped[0]
        raise DataError(f"None of the {len(skipped)} images listed in {str(manifest)!r} exists (the first: "
                        f"{first.path!r}, {first.reason}).",
                        "write each image's path relative to the manifest's folder, and keep the images there.")
    return samples, skipped


def _read_text(lines: _Lines, what: str) -> str:
    try:
        return lines.manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the manifest {str(lines.manifest)!r}: {exc}.", f"save it as UTF-8 text {what}.") \
            from None


# line, path, labels, split, in multi-label form, the image's name (an optional Name column or "name" key)
_Row = tuple[int, str, tuple[str, ...], str | None, bool, str | None]


def _table_rows(lines: _Lines) -> list[_Row]:
    manifest = lines.manifest
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" else ","
    columns = "the column ImageSource" if lines.to_score else "the columns ImageSource and Label"
    rows = list(csv.reader(_read_text(lines, f"with {columns}").splitlines(), delimiter=delimiter))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    label_key = "label" if "label" in header else "labels"
    if "imagesource" not in header or (label_key not in header and not lines.to_score):
        raise DataError(f"Line 1 of {str(manifest)!r} lacks {columns} "
                        f"(found: {', '.join(rows[0]) if rows else 'nothing'}).",
                        f"make its first line 'ImageSource{delimiter}Label' (separator "
                        f"{'tab' if delimiter == chr(9) else 'comma'}), or ImageSource and Labels for several "
                        f"labels per image{' (Label is optional to score)' if lines.to_score else ''}.")
    src_col = header.index("imagesource")
    label_col = header.index(label_key) if label_key in header else None
    split_col = header.index("split") if "split" in header else None
    name_col = header.index("name") if "name" in header else None
    found = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = row + [""] * (len(header) - len(row))
        if not cells[src_col].strip():
            raise lines.error(line, "has no image path", "give every line an ImageSource, or drop it.")
        labels = lines.labels_of(line, cells[label_col] if label_col is not None else None,
                                 listed=label_key == "labels")
        split = lines.split_of(line, cells[split_col]) if split_col is not None else None
        name = cells[name_col].strip() or None if name_col is not None else None
        found.append((line, cells[src_col].strip(), labels, split, label_key == "labels", name))
    return found


def _jsonl_rows(lines: _Lines) -> list[_Row]:
    found = []
    for line, text in enumerate(_read_text(lines, 'with one {"image_url": ..., "label": ...} per line')
                                .splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise lines.error(line, f"is not valid JSON ({exc})",
                              'write one JSON object per line: {"image_url": "cat/1.jpg", "label": "cat"}.') from None
        if not isinstance(item, dict):
            raise lines.error(line, "is not a JSON object", 'write {"image_url": "cat/1.jpg", "label": "cat"}.')
        url = item.get("image_url")
        if not isinstance(url, str) or not url.strip():
            raise lines.error(line, "has no image_url", 'give every line its image: "image_url": "cat/1.jpg".')
        if "label" not in item and not lines.to_score:
            raise lines.error(line, "has no label", 'give every line its label: "label": "cat".')
        found.append((line, url.strip(), lines.labels_of(line, item.get("label"), listed=False),
                      lines.split_of(line, item.get("split")), isinstance(item.get("label"), list),
                      item["name"] if isinstance(item.get("name"), str) and item["name"].strip() else None))
    return found
