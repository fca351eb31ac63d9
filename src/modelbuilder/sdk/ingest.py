"""An uploaded zip made into a data asset version, trusting nothing in it.

The archive is refused whole, with a one-line reason, when a member would leave its folder (`../`, an
absolute path, a drive letter), is a link, or when the sizes it declares add up past the cap or a member
claims to inflate more than MAX_RATIO times (a zip bomb). Member names are never used as paths on the
server: each image is stored under its own SHA-256 (`files/ab/abcdef....jpg`), so no name can reach the
file system, and a member is read no further than the size it declared. Files that are not images (or
do not decode) are skipped with their reason, which the version's data report lists.

Two layouts are read: a pack with manifest.json (`sdk.datapack`, what `modelbuilder data upload` sends;
every image's SHA-256 is checked against it), or a zip of one folder per label (what a browser sends),
optionally inside one top folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from modelbuilder.core import entities as e
from modelbuilder.core.datasets import DATA_FILE
from modelbuilder.core.services import Services
from modelbuilder.errors import DataError, InvalidInput, PayloadTooLarge
from modelbuilder.results.runtime import InvalidImageError, load_image, square_image
from modelbuilder.sdk.datapack import FORMAT, IMAGES, MANIFEST, Entry, content_digest, label_counts, manifest_bytes
from modelbuilder.training.balance import balance_finding
from modelbuilder.training.data import DataReport, Skipped
from modelbuilder.training.duplicates import TRAINING, DataImage, Fingerprints, find_duplicates, picture_hashes

HASHED_SIZE = 64  # the square the perceptual hashes are taken from (they shrink it further themselves)
MAX_RATIO = 200  # a member may declare at most this many bytes per compressed byte (images barely compress)
MAX_MEMBERS = 1_000_000
MAX_LABEL = 200
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")
_IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db")
UPLOADED_DIGEST = "uploaded_digest"  # in a version's report: the content digest of everything its pack listed


def same_content(version: e.DataVersion, digest: str) -> bool:
    """Whether content with this digest (`datapack.content_digest`) is what `version` holds already: the images
    it kept, or everything the pack it came from listed (files that did not decode included, so a folder with
    one broken image is not sent again to find that out)."""
    return digest in (version.digest, version.report.get(UPLOADED_DIGEST))


@dataclass(frozen=True)
class Candidate:
    member: zipfile.ZipInfo
    path: str
    label: str
    sha256: str | None  # as the manifest states it


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"The upload was refused: {reason}.", "upload a zip of images in one folder per label "
                        "(or what 'modelbuilder data upload' packs), without links or paths out of the folder.")


def path_problem(name: str) -> str | None:
    """Why a path from an upload (a member's name, or a path its manifest lists) is refused; None if it is not."""
    if "\x00" in name or "\\" in name:
        return "has a backslash or NUL in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "would leave its folder ('..')"
    return None


def check_members(infos: list[zipfile.ZipInfo], cap: int) -> None:
    """Refuse the archive (see the module's docstring) before a byte of it is unpacked."""
    if len(infos) > MAX_MEMBERS:
        raise _refuse(f"it has {len(infos)} members, more than {MAX_MEMBERS}")
    declared = 0
    for info in infos:
        shown = repr(info.filename[:80])
        if problem := path_problem(info.filename):
            raise _refuse(f"member {shown} {problem}")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _refuse(f"member {shown} is a symbolic link")
        if info.is_dir():
            continue
        declared += info.file_size
        if declared > cap:
            raise PayloadTooLarge(f"The upload was refused: its members declare more than {cap >> 20} MiB unpacked "
                                  "(a zip bomb, or data over the server's cap).",
                                  "upload less, or raise the cap (MODELBUILDER_MAX_UPLOAD_MB) on the server.")
        if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _refuse(f"member {shown} declares {info.file_size} bytes from {info.compress_size} compressed "
                          "(a zip bomb)")


def _candidates(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
                ) -> tuple[list[Candidate], list[dict], str | None]:
    """The images to read, the files skipped so far, and the digest of what a pack's manifest lists."""
    files = [i for i in infos if not i.is_dir() and not any(p in i.filename for p in _IGNORED)]
    by_name = {i.filename: i for i in files}
    skipped: list[dict[str, str]] = []
    if MANIFEST in by_name:
        manifest = _read_manifest(archive, by_name[MANIFEST])
        found = []
        for item in manifest:
            info = by_name.get(IMAGES + item["path"])
            if info is None:
                skipped.append({"path": item["path"], "reason": "listed in the manifest but not in the zip"})
                continue
            found.append(Candidate(info, item["path"], item["label"], item["sha256"]))
        return found, skipped, content_digest(Entry(x["path"], x["label"], x["sha256"], 0) for x in manifest)
    parts = [PurePosixPath(i.filename).parts for i in files]
    depth = 0  # strip top folders all members share while below them there is still a folder per label
    while (parts and all(len(p) > depth + 1 for p in parts) and any(len(p) > depth + 2 for p in parts)
           and len({p[depth] for p in parts}) == 1):
        depth += 1
    found = []
    for info, p in zip(files, parts, strict=True):
        rest = p[depth:]
        if len(rest) < 2:
            skipped.append({"path": "/".join(rest), "reason": "file outside any label folder"})
        elif any(part.startswith(".") for part in rest):
            continue
        else:
            found.append(Candidate(info, "/".join(rest), rest[0], None))
    return found, skipped, None


def _read_manifest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[dict[str, Any]]:
    def valid(item: Any) -> bool:
        return (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("label"), str)
                and isinstance(item.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", item["sha256"]) is not None
                and item["path"] != "" and path_problem(item["path"]) is None)

    try:
        manifest = json.loads(archive.read(info))
    except (ValueError, zipfile.BadZipFile):
        manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None
    if not isinstance(files, list) or not all(valid(item) for item in files):
        raise _refuse(f"its {MANIFEST} is not a {FORMAT} manifest")
    return files


def _label_problem(label: str) -> str | None:
    if not label.strip() or len(label) > MAX_LABEL or any(ord(c) < 32 or ord(c) == 127 for c in label):
        return f"label {label[:40]!r} is empty, longer than {MAX_LABEL} characters or has control characters"
    return None


def stored_name(sha: str, path: str) -> str:
    """Where a version keeps an image: under its SHA-256 (and its suffix), never under a name from the upload."""
    suffix = _SUFFIX.search(path)
    return f"files/{sha[:2]}/{sha}{suffix.group(0).lower() if suffix else ''}"


def _store(folder: Path, data: bytes, sha: str, path: str) -> str:
    relative = stored_name(sha, path)
    target = folder / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return relative


def ingest_zip(services: Services, workspace: str, name: str, archive_path: Path, cap: int
               ) -> tuple[e.DataVersion, bool]:
    """The archive as the next version of `name` in `workspace` (or the latest, when nothing changed)."""
    staged = services.data.staging_folder()
    try:
        try:
            archive = zipfile.ZipFile(archive_path)
        except (zipfile.BadZipFile, OSError):
            raise _refuse("it is not a zip archive") from None
        with archive:
            infos = archive.infolist()
            check_members(infos, cap)
            candidates, skipped, listed = _candidates(archive, infos)
            entries, rows, hashes = _unpack(archive, candidates, staged, skipped)
        if not entries:
            raise DataError("The upload has no images that can be read.",
                            "upload JPEG, PNG, BMP, GIF, TIFF or WebP files in one folder per label.")
        counts = label_counts(entries)
        if len(counts) < 2:
            raise DataError(f"The upload has one label only ({next(iter(counts))!r}); a classifier needs two.",
                            "add a folder of images for at least one more label.")
        (staged / DATA_FILE).write_text("ImageSource\tLabel\tName\n"
                                        + "".join(f"{p}\t{label}\t{name}\n" for p, label, name in rows))
        (staged / MANIFEST).write_bytes(manifest_bytes(entries))
        report = upload_report(f"{name} (upload)", entries, skipped, hashes)
        if listed is not None:
            report[UPLOADED_DIGEST] = listed
        size = sum(x.size for x in entries)
        return services.data.add_version(workspace, name, staged, digest=content_digest(entries),
                                         images=len(entries), size=size, labels=counts, report=report)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _unpack(archive: zipfile.ZipFile, candidates: list[Candidate], staged: Path, skipped: list[dict[str, str]]
            ) -> tuple[list[Entry], list[tuple[str, str, str]], list[tuple[int, int]]]:
    """Each image stored under its SHA-256, with its label, and its perceptual hashes (for the report)."""
    entries, rows, hashes, seen = [], [], [], set()
    for candidate in sorted(candidates, key=lambda c: c.path):
        if candidate.path in seen:
            continue
        seen.add(candidate.path)
        problem = _label_problem(candidate.label)
        if problem:
            skipped.append({"path": candidate.path, "reason": problem})
            continue
        try:
            with archive.open(candidate.member) as member:
                data = member.read(candidate.member.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
            raise _refuse(f"member {candidate.member.filename[:80]!r} cannot be read ({error})") from None
        if len(data) > candidate.member.file_size:
            raise _refuse(f"member {candidate.member.filename[:80]!r} holds more than it declares")
        sha = hashlib.sha256(data).hexdigest()
        if candidate.sha256 is not None and sha != candidate.sha256:
            raise _refuse(f"{candidate.path[:80]!r} does not match its SHA-256 in the manifest (damaged in transit?)")
        try:
            picture = load_image(data, draft_size=HASHED_SIZE)
        except InvalidImageError as error:
            skipped.append({"path": candidate.path, "reason": error.reason})
            continue
        hashes.append(picture_hashes(Image.fromarray(square_image(picture, HASHED_SIZE))))
        shown = re.sub(r"[\x00-\x1f\x7f]", "?", candidate.path)  # the name reports show: one line, one cell
        rows.append((_store(staged, data, sha, candidate.path), candidate.label, shown))
        entries.append(Entry(candidate.path, candidate.label, sha, len(data)))
    return entries, rows, hashes


def upload_report(source: str, entries: list[Entry], skipped: list[dict[str, str]], hashes: list[tuple[int, int]]
                  ) -> dict[str, Any]:
    """The data report of an upload, before any training, in the shape of a run's (`training.data.DataReport`):
    labels and counts, the files skipped and why, exact and near duplicates (within a label, and across labels:
    a labelling conflict) and the label balance; the split and what training adds come later."""
    counts = label_counts(entries)
    images = [DataImage(x.path, x.label, TRAINING) for x in entries]
    prints = Fingerprints([x.sha256 for x in entries], np.array([h[0] for h in hashes], dtype=np.uint64),
                          np.array([h[1] for h in hashes], dtype=np.uint64))
    report = DataReport(source=source, labels=list(counts), train_per_label=counts,
                        skipped=[Skipped(s["path"], s["reason"]) for s in skipped],
                        balance=balance_finding(counts, "none"), duplicates=find_duplicates(images, prints))
    found = report.to_dict()
    lines = [line for line in found["summary"] if line["topic"] != "leaks"]  # no split yet
    found["summary"] = [{"topic": "images", "level": "ok", "fix": "", "text": f"{len(entries)} images in "
                         f"{len(counts)} labels: " + ", ".join(f"{label} {n}" for label, n in counts.items()) + "."},
                        *lines]
    return {**found, "images": len(entries)}
