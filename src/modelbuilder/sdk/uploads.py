"""Resumable uploads of a data asset's zip, in chunks, as the server (and a store-local upload) keeps them.

    start(name, size, sha256, digest) -> an upload (its id and the offset already received)
    append(id, offset, chunk)         -> the new offset (a chunk must start where the last one ended)
    finish(id)                        -> the version made (sdk.ingest), or the latest when nothing changed

`finish` can be asked again (a client whose connection dropped during a long unpacking retries it): the
answer is kept beside the upload, and a second `finish` while the first still works answers `Busy`.

An upload's id is derived from (workspace, name, size, SHA-256): starting the same upload again, after a
lost connection or in a new process, finds the bytes already received and continues from there. Its
bytes live in `<artifact root>/data/.uploads/<id>/`, a folder the server names, until `finish` ingests
them. The size is capped (MODELBUILDER_MAX_UPLOAD_MB) when the upload starts and at every chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from modelbuilder import names
from modelbuilder.config import UPLOAD_CHUNK
from modelbuilder.core import entities as e
from modelbuilder.core.artifacts import file_sha256
from modelbuilder.core.services import Services
from modelbuilder.errors import Busy, Conflict, InvalidInput, NotFound, PayloadTooLarge
from modelbuilder.sdk import ingest

ABANDONED_S = 7 * 24 * 3600  # an upload untouched this long is removed when another one starts
UPLOADS = ".uploads"
_ID = re.compile(r"[0-9a-f]{32}")
_SHA = re.compile(r"[0-9a-f]{64}")
LOCK_WAIT_S = 60  # a request waits this long for another on the same upload, then answers Busy
_PART, _META, _DONE = "data.zip.part", "upload.json", "done.json"


@dataclass(frozen=True)
class Upload:
    id: str
    workspace: str
    name: str
    size: int
    sha256: str | None
    offset: int
    existing: e.DataVersion | None = None  # the latest version already has this content: nothing to send


def cap_bytes(services: Services) -> int:
    return services.settings.max_upload_mb << 20


def _folder(services: Services, upload_id: str) -> Path:
    if not isinstance(upload_id, str) or not _ID.fullmatch(upload_id):
        raise NotFound(f"Upload {str(upload_id)[:40]!r} does not exist.", "start the upload again.")
    return services.data.root / UPLOADS / upload_id


def _over_cap(services: Services, size: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The upload ({size / (1 << 20):.1f} MiB) is over the server's cap of "
                           f"{services.settings.max_upload_mb} MiB.",
                           "upload less (split the data into several assets), or raise MODELBUILDER_MAX_UPLOAD_MB "
                           "on the server.")


def start(services: Services, name: str, size: int, sha256: str | None, *, workspace: str | None = None,
          digest: str | None = None) -> Upload:
    """Begin (or find again) the upload of a zip of `size` bytes and this SHA-256 as the next version of `name`.
    Without a SHA-256 (a browser outside a secure context cannot compute one) the upload has a new id: it can
    be resumed only by that id, and its bytes are checked by their size and contents alone."""
    names.data_name(name)
    workspace = services.workspaces.in_use(workspace)[0]
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA.fullmatch(sha256)):
        raise InvalidInput("The upload's sha256 is not 64 lowercase hex digits.", "send the zip's SHA-256.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInput(f"The upload's size {size!r} is not a positive number of bytes.", "send the zip's size.")
    if size > cap_bytes(services):
        raise _over_cap(services, size)
    if digest is not None:
        try:
            latest, _ = services.data.version(workspace, name)
        except NotFound:
            latest = None
        if latest is not None and ingest.same_content(latest, digest):
            return Upload("", workspace, name, size, sha256, size, existing=latest)
    _sweep(services.data.root / UPLOADS)
    upload_id = (hashlib.sha256(f"{workspace}\0{name}\0{size}\0{sha256}".encode()).hexdigest()[:32] if sha256
                 else uuid.uuid4().hex)
    folder = _folder(services, upload_id)
    if (folder / _DONE).exists():  # the same bytes were uploaded and finished before: this is a new upload
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / _META
    if not meta.exists():
        meta.write_text(json.dumps({"workspace": workspace, "name": name, "size": size, "sha256": sha256}))
    return status(services, upload_id, workspace)


def _sweep(root: Path) -> None:
    """Remove uploads nobody has added to for ABANDONED_S (their bytes would otherwise stay for ever)."""
    if not root.is_dir():
        return
    now = time.time()
    for folder in root.iterdir():
        part = folder / _PART
        try:
            touched = (part if part.exists() else folder).stat().st_mtime
        except OSError:
            continue
        if folder.is_dir() and now - touched > ABANDONED_S:
            shutil.rmtree(folder, ignore_errors=True)
            folder.with_name(folder.name + ".lock").unlink(missing_ok=True)


def status(services: Services, upload_id: str, workspace: str | None = None) -> Upload:
    """The upload and the bytes received so far; NotFound unless it exists (in `workspace`, when given)."""
    folder = _folder(services, upload_id)
    try:
        meta = json.loads((folder / _META).read_text())
    except (OSError, ValueError):
        meta = None
    if meta is None or (workspace is not None and meta["workspace"] != workspace):
        raise NotFound(f"Upload {upload_id} does not exist (it finished, or was never started).",
                       "start the upload again.")
    part = folder / _PART
    offset = meta["size"] if (folder / _DONE).exists() else part.stat().st_size if part.exists() else 0
    return Upload(upload_id, meta["workspace"], meta["name"], meta["size"], meta["sha256"], offset)


@contextmanager
def _locked(folder: Path, upload_id: str) -> Iterator[None]:
    try:
        with FileLock(str(folder.with_name(folder.name + ".lock")), timeout=LOCK_WAIT_S):
            yield
    except Timeout:
        raise Busy(f"Upload {upload_id} is being worked on by another request (finishing takes a while for "
                   "many images).", "ask again in a moment: the answer will be that request's.") from None


def append(services: Services, upload_id: str, offset: int, chunk: bytes, workspace: str | None = None) -> Upload:
    """Add `chunk` at `offset`, which must be the bytes received so far (409 with the right offset otherwise)."""
    folder = _folder(services, upload_id)
    with _locked(folder, upload_id):
        upload = status(services, upload_id, workspace)
        if offset != upload.offset:
            raise Conflict(f"Upload {upload_id} has {upload.offset} bytes, not {offset}.",
                           f"send the chunk that starts at byte {upload.offset}.")
        if len(chunk) > UPLOAD_CHUNK:
            raise PayloadTooLarge(f"The chunk is larger than {UPLOAD_CHUNK >> 20} MiB.", "send smaller chunks.")
        if offset + len(chunk) > upload.size:
            raise PayloadTooLarge(f"The chunk goes past the upload's declared size ({upload.size} bytes).",
                                  "send the zip as it was declared, or start a new upload.")
        with (folder / _PART).open("ab") as handle:
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    return status(services, upload_id, workspace)


def finish(services: Services, upload_id: str, workspace: str | None = None) -> tuple[e.DataVersion, bool]:
    """Check the bytes received against the declared size and SHA-256, then make the version (sdk.ingest).
    Asked again after it succeeded, the same answer; after it failed, NotFound (the bytes are gone)."""
    folder = _folder(services, upload_id)
    with _locked(folder, upload_id):
        upload = status(services, upload_id, workspace)
        done = folder / _DONE
        if done.exists():
            answer = json.loads(done.read_text())
            return services.data.version(upload.workspace, upload.name, answer["version"])[0], answer["created"]
        part = folder / _PART
        if upload.offset != upload.size:
            raise Conflict(f"Upload {upload_id} has {upload.offset} of its {upload.size} bytes.",
                           f"send the rest, starting at byte {upload.offset}.")
        try:
            if upload.sha256 is not None and file_sha256(part) != upload.sha256:
                raise InvalidInput("The bytes received do not match the upload's SHA-256 (damaged in transit).",
                                   "upload again.")
            version, created = ingest.ingest_zip(services, upload.workspace, upload.name, part, cap_bytes(services))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            folder.with_name(folder.name + ".lock").unlink(missing_ok=True)
            raise
        done.write_text(json.dumps({"version": version.version, "created": created}))
        part.unlink(missing_ok=True)
        return version, created
