"""The artifact store: one folder per run under a root, safe paths, atomic writes.

Clients never name storage locations. A run's folder is derived from its (validated) id, and every
relative path is checked twice: by its text (no absolute paths, '..', backslashes, drive letters,
NUL, percent-escapes or empty segments) and by where it really lands after symlinks are followed,
which must stay inside the run's folder. Writes go to a temporary file in the same folder, are
fsynced and then renamed over the target, so a reader never sees half a file.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from modelbuilder.core import entities as e
from modelbuilder.errors import InvalidInput, NotFound, step

MAX_RELPATH = 1024
_TEMP_PREFIX = ".tmp-"
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|%]')
_CHUNK = 1 << 20


def check_relpath(relpath: str) -> str:
    """`relpath` if it is a clean relative POSIX path; InvalidInput saying what is wrong otherwise."""
    if not isinstance(relpath, str) or not relpath:
        raise InvalidInput("An artifact path is empty.", "give a path relative to the run, like 'bestModel.onnx'.")
    shown = repr(relpath[:80])
    if len(relpath) > MAX_RELPATH:
        raise InvalidInput(f"Artifact path {shown}... is too long.", f"keep it under {MAX_RELPATH} characters.")
    bad = _FORBIDDEN.search(relpath)
    if bad:
        raise InvalidInput(
            f"Artifact path {shown} contains {bad.group()!r}.",
            "use '/' between folders and no control characters, backslashes, ':', '%' or *?\"<>|.",
        )
    if relpath.startswith("/"):
        raise InvalidInput(f"Artifact path {shown} is absolute.", "give a path relative to the run's folder.")
    if any(part in ("", ".", "..") for part in relpath.split("/")):
        raise InvalidInput(
            f"Artifact path {shown} has an empty, '.' or '..' segment.",
            "give a plain path inside the run's folder, like 'checkpoints/last.pt'.",
        )
    if any(part.startswith(_TEMP_PREFIX) for part in relpath.split("/")):
        raise InvalidInput(f"Artifact path {shown} uses the reserved prefix {_TEMP_PREFIX!r}.", "rename it.")
    return relpath


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (the one file hash of the project)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _described(run_id: str, relpath: str, path: Path) -> e.ArtifactRecord:
    stat = path.stat()
    return e.ArtifactRecord(run_id, relpath, stat.st_size, file_sha256(path),
                            datetime.fromtimestamp(stat.st_mtime, UTC))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def run_dir(self, run_id: str) -> Path:
        """The run's folder (not created): derived from the run id only."""
        if not isinstance(run_id, str) or not e.RUN_ID.fullmatch(run_id):
            raise InvalidInput(f"{str(run_id)[:40]!r} is not a run id.", "run ids look like 'run-0123456789ab'.")
        return self.root / run_id

    def resolve(self, run_id: str, relpath: str) -> Path:
        """The absolute path of `relpath` in the run's folder, after checking it cannot escape."""
        base = self.run_dir(run_id)
        target = base / check_relpath(relpath)
        real_base = base.resolve()
        if not target.resolve().is_relative_to(real_base):
            raise InvalidInput(
                f"Artifact path {relpath[:80]!r} leads outside the run's folder.",
                "give a path inside the run's folder; links out of it are not followed.",
            )
        return target

    # --- writing ------------------------------------------------------------------------------------
    def _atomic(self, run_id: str, relpath: str, chunks: Iterator[bytes]) -> e.ArtifactRecord:
        target = self.resolve(run_id, relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return e.ArtifactRecord(run_id, relpath, size, digest.hexdigest(), e.utcnow())

    def write_bytes(self, run_id: str, relpath: str, data: bytes) -> e.ArtifactRecord:
        return self._atomic(run_id, relpath, iter((bytes(data),)))

    def write_file(self, run_id: str, relpath: str, source: str | os.PathLike[str]) -> e.ArtifactRecord:
        """Copy the file `source` into the run's folder as `relpath`."""
        source = Path(source)
        if not source.is_file():
            raise NotFound(f"File {str(source)!r} does not exist.", "give the path of an existing file.")

        def chunks() -> Iterator[bytes]:
            with source.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk

        return self._atomic(run_id, relpath, chunks())

    # --- reading ------------------------------------------------------------------------------------
    def list(self, run_id: str) -> builtins.list[e.ArtifactRecord]:
        """Every file in the run's folder (links and unfinished writes left out), sorted by path."""
        base = self.run_dir(run_id)
        if not base.is_dir():
            return []
        records = []
        for folder, dirs, files in os.walk(base):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink() and not d.startswith(_TEMP_PREFIX))
            for name in sorted(files):
                path = here / name
                if name.startswith(_TEMP_PREFIX) or path.is_symlink():
                    continue
                records.append(_described(run_id, path.relative_to(base).as_posix(), path))
        return sorted(records, key=lambda record: record.path)

    def describe(self, run_id: str, relpath: str) -> e.ArtifactRecord:
        """One file of the run's folder as it is now: its size, SHA-256 and time."""
        return _described(run_id, relpath, self.resolve(run_id, relpath))

    def open(self, run_id: str, relpath: str) -> BinaryIO:
        path = self.resolve(run_id, relpath)
        if not path.is_file():
            raise NotFound(
                f"Run {run_id} has no artifact {relpath!r}.",
                "list the run's artifacts ({list}).", {"list": step("list_artifacts", run=run_id)},
            )
        return path.open("rb")

    def exists(self, run_id: str, relpath: str) -> bool:
        return self.resolve(run_id, relpath).is_file()

    def delete_run(self, run_id: str) -> None:
        """Remove the run's folder and everything in it (nothing happens if it does not exist)."""
        base = self.run_dir(run_id)
        if base.is_symlink():
            base.unlink()
        elif base.exists():
            shutil.rmtree(base)
