"""Serving a run's files to a client: one artifact, or the result bundle as one zip.

Every path goes through `ArtifactStore.resolve` (no absolute paths, '..', backslashes, NUL,
percent-escapes; the real path must stay inside the run's folder), and is then opened by its real
path with O_NOFOLLOW and checked to be a regular file, so a link swapped in after the check is not
followed either. Symbolic links inside the run's folder are never served.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO
from urllib.parse import quote

from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.errors import InvalidInput, NotFound
from modelbuilder.results.files import RESULT_FILES, project_folders
from modelbuilder.server.handlers import BadPath

CHUNK = 1 << 20
_TEXT = {".md", ".py", ".txt", ".log", ".toml", ".csv", ".tsv", ".yaml", ".yml"}
_INLINE_TYPES = {".png": "image/png", ".json": "application/json"}
_STORED = {".onnx", ".zip", ".png", ".pt", ".jpg"}  # already dense: deflating them costs time for nothing


def content_type(relpath: str) -> tuple[str, bool]:
    """(media type, shown inline?) chosen from a short allow-list; everything else is a download."""
    suffix = PurePosixPath(relpath).suffix.lower()
    if suffix in _INLINE_TYPES:
        return _INLINE_TYPES[suffix], True
    if suffix in _TEXT:
        return "text/plain; charset=utf-8", True
    if suffix == ".zip":
        return "application/zip", False
    return "application/octet-stream", False


def disposition(filename: str, inline: bool) -> str:
    ascii_name = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in filename)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name or 'download'}\"; filename*=UTF-8''{quote(filename, safe='')}"


def open_artifact(artifacts: ArtifactStore, run_id: str, relpath: str) -> tuple[BinaryIO, int]:
    """The open file `relpath` of the run and its size; BadPath (400) or NotFound (404) otherwise."""
    try:
        path = artifacts.resolve(run_id, relpath)
    except InvalidInput as refused:
        raise BadPath(refused.message, refused.hint) from None
    missing = NotFound(f"Run {run_id} has no artifact {relpath[:200]!r}.",
                       f"list them with GET /api/v1/runs/{run_id}/artifacts.")
    real = path.resolve()
    if not real.is_relative_to(artifacts.run_dir(run_id).resolve()):  # resolve() checked it; a race could not
        raise BadPath(f"Artifact path {relpath[:80]!r} leads outside the run's folder.", "give a path inside it.")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise missing from None
    except OSError:  # ELOOP: the last component became a link
        raise BadPath(f"Artifact path {relpath[:80]!r} is a link.", "links are not served.") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise missing
    return os.fdopen(fd, "rb"), info.st_size


def chunks(handle: IO[bytes]) -> Iterator[bytes]:
    """The file's bytes in chunks; closes it at the end (or when the client goes away)."""
    try:
        while chunk := handle.read(CHUNK):
            yield chunk
    finally:
        handle.close()


def _files_under(artifacts: ArtifactStore, run_id: str, folder: str) -> list[str]:
    """Relative paths of the regular files under `folder` of the run (links and caches left out)."""
    try:
        base = artifacts.resolve(run_id, folder)
    except InvalidInput as refused:
        raise BadPath(refused.message, refused.hint) from None
    run_dir = artifacts.run_dir(run_id)
    if base.is_symlink() or not base.is_dir():
        raise NotFound(f"Run {run_id} has no {folder}/.", "wait until the run is Completed.")
    found = []
    for dirpath, dirs, files in os.walk(base):
        here = Path(dirpath)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (here / d).is_symlink())
        found += [(here / f).relative_to(run_dir).as_posix() for f in sorted(files) if not (here / f).is_symlink()]
    return found


def write_bundle(artifacts: ArtifactStore, run_id: str, name: str) -> tuple[IO[bytes], int]:
    """`<Name>.ConsoleApp/`, `<Name>.Model/`, `<Name>.WebApi/` and the three assets as one zip, in a temporary
    file."""
    members = [relpath for folder in project_folders(name) for relpath in _files_under(artifacts, run_id, folder)]
    members += RESULT_FILES
    out = tempfile.TemporaryFile()
    try:
        with zipfile.ZipFile(out, "w") as archive:
            for relpath in members:
                handle, size = open_artifact(artifacts, run_id, relpath)
                info = zipfile.ZipInfo(relpath, date_time=time.localtime(max(os.fstat(handle.fileno()).st_mtime,
                                                                             315532800))[:6])
                info.compress_type = zipfile.ZIP_STORED if PurePosixPath(relpath).suffix in _STORED \
                    else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with handle, archive.open(info, "w", force_zip64=size > 1 << 31) as target:
                    shutil.copyfileobj(handle, target, CHUNK)
        size = out.tell()
        out.seek(0)
        return out, size
    except BaseException:
        out.close()
        raise
