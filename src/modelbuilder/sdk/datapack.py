"""The packed form of a data asset: one zip of the images and a manifest of each one's path, label, size
and SHA-256, as `modelbuilder data upload` sends it and `data download` gives it back.

    manifest.json        {"format": "modelbuilder.data/1", "files": [{"path", "label", "sha256", "size"}, ...]}
    images/<path>        each image, at its path relative to the data folder (or manifest)

A pack is deterministic (members sorted, fixed times, stored uncompressed: images are compressed already),
so the same images make the same bytes. The content digest (`content_digest`) is what tells versions
apart: the same images under the same paths and labels are the same content, whatever the zip.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelbuilder.core.artifacts import file_sha256
from modelbuilder.training import data as data_mod

FORMAT = "modelbuilder.data/1"
MANIFEST = "manifest.json"
IMAGES = "images/"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    path: str  # relative, with '/' separators
    label: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Pack:
    file: Path
    size: int
    sha256: str  # of the zip's bytes: what an upload is checked against
    digest: str  # of the content (see content_digest)
    entries: list[Entry]
    skipped: list[data_mod.Skipped]


def content_digest(entries: Iterable[Entry]) -> str:
    """One SHA-256 over every image's path, label and SHA-256, in path order."""
    digest = hashlib.sha256(FORMAT.encode())
    for entry in sorted(entries, key=lambda x: (x.path, x.label)):
        digest.update(f"\n{entry.path}\t{entry.label}\t{entry.sha256}".encode())
    return digest.hexdigest()


def label_counts(entries: Iterable[Entry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.label] = counts.get(entry.label, 0) + 1
    return dict(sorted(counts.items()))


def manifest_bytes(entries: list[Entry]) -> bytes:
    files = [{"path": x.path, "label": x.label, "sha256": x.sha256, "size": x.size} for x in entries]
    return json.dumps({"format": FORMAT, "files": files}, indent=1, ensure_ascii=False).encode()


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    return info


def write_pack(target: Path, entries: list[Entry], open_file: dict[str, Path]) -> None:
    """The zip of `entries` at `target`; `open_file` maps each entry's path to the file holding its bytes."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(_member(MANIFEST), manifest_bytes(entries))
        for entry in entries:
            with open_file[entry.path].open("rb") as source, archive.open(_member(IMAGES + entry.path), "w") as out:
                while chunk := source.read(_CHUNK):
                    out.write(chunk)


@dataclass(frozen=True)
class Scan:
    """What a pack of `source` holds, found without writing it: enough to ask whether it is new."""

    entries: list[Entry]
    files: dict[str, Path]  # each entry's path -> the file holding its bytes
    skipped: list[data_mod.Skipped]
    digest: str


def scan(source: str | os.PathLike[str]) -> Scan:
    """The images of `source` (a folder with one sub-folder per label, or a .tsv/.csv manifest), each with its
    SHA-256, after the checks that need no decoding (at least two labels, paths inside)."""
    samples, skipped = data_mod.discover(source)
    data_mod.check_labels(samples, str(source))
    root = Path(source).expanduser().resolve()
    base = root if root.is_dir() else root.parent
    entries, files = [], {}
    for sample in samples:
        path = Path(os.path.normpath(sample.path))
        relative = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        if relative in files:
            continue  # a manifest naming one file twice: once is enough
        try:
            entries.append(Entry(relative, sample.label, file_sha256(path), path.stat().st_size))
        except OSError as error:
            skipped.append(data_mod.Skipped(relative, f"cannot be read ({error.strerror})"))
            continue
        files[relative] = path
    entries.sort(key=lambda x: x.path)
    return Scan(entries, files, skipped, content_digest(entries))


def write(found: Scan, folder: Path) -> Pack:
    """The zip of a scan in `folder` (named by its digest: written once, kept until it is sent)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{found.digest[:32]}.zip"
    if not target.is_file():
        partial = target.with_suffix(".partial")
        write_pack(partial, found.entries, found.files)
        os.replace(partial, target)
    return Pack(target, target.stat().st_size, file_sha256(target), found.digest, found.entries, found.skipped)


def pack(source: str | os.PathLike[str], folder: Path) -> Pack:
    """Pack the images of `source` into a zip in `folder` (`scan`, then `write`)."""
    return write(scan(source), folder)
