"""Data assets, as every face uses them: upload a folder or manifest (packed, sent in resumable chunks,
made version 1, 2, ... of a name; unchanged content makes no new version), list, show, download, delete,
and the folder a training on `pets` or `pets:2` reads.

`modelbuilder data ...`, the SDK (`modelbuilder.sdk.data`) and `/api/v1/workspaces/{workspace}/data` call
these. With a `client` (`sdk.client.Client`: a server and no store shared with it) they go through the
REST API; without, through the store in this process. Either way an upload is the same protocol
(`sdk.uploads`): start, chunks at offsets, finish.

    from modelbuilder.sdk import data
    uploaded = data.upload(services, "images/pets", "pets")     # uploaded.version.ref == 'pets:1'
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.config import UPLOAD_CHUNK
from modelbuilder.core import entities as e
from modelbuilder.core.datasets import DATA_FILE
from modelbuilder.core.services import Services
from modelbuilder.errors import Busy, InvalidInput, NotFound
from modelbuilder.sdk import datapack, ingest, uploads
from modelbuilder.sdk.client import Client, RemoteError

Progress = Callable[[int, int], None]  # (bytes sent, bytes in all)
PACKS = "packs"  # under the home folder: packed uploads, kept until they are sent


@dataclass(frozen=True)
class Uploaded:
    version: e.DataVersion
    created: bool  # False: the content equals the latest version's, which is returned
    scan: datapack.Scan  # what was found in the source: each image's path, label and SHA-256, the files skipped
    packed_size: int  # bytes of the zip (0 when nothing had changed, so none was written)
    sent: int  # bytes sent by this call (0 when the server had them all)
    seconds: float


COMPLETE_WAIT_S = 3600.0  # how long a client waits on a server still unpacking an upload it sent before


# --- uploads ----------------------------------------------------------------------------------------------
def upload(services: Services, source: str | Path, name: str, *, workspace: str | None = None,
           client: Client | None = None, on_progress: Progress | None = None,
           chunk_size: int = UPLOAD_CHUNK) -> Uploaded:
    """Pack `source` and send it as the next version of `name` (see the module's docstring). The content is
    compared with the latest version's first: unchanged, no zip is written and nothing is sent."""
    started = time.monotonic()
    names.data_name(name)
    found = datapack.scan(source)
    if (latest := _latest(services, name, workspace, client)) is not None and ingest.same_content(latest, found.digest):
        return Uploaded(latest, False, found, 0, 0, time.monotonic() - started)
    pack = datapack.write(found, services.settings.resolved_home / PACKS)
    if client is None:
        session = uploads.start(services, name, pack.size, pack.sha256, workspace=workspace, digest=pack.digest)
    else:
        session = _upload_of(client.json("POST", f"/workspaces/{_in_use(services, workspace, client)}/data/uploads",
                                         json={"name": name, "size": pack.size, "sha256": pack.sha256,
                                               "digest": pack.digest}, retry=True))
    if session.existing is not None:
        pack.file.unlink(missing_ok=True)
        return Uploaded(session.existing, False, found, pack.size, 0, time.monotonic() - started)
    sent, offset = 0, session.offset
    with pack.file.open("rb") as handle:
        while offset < pack.size:
            if on_progress:
                on_progress(offset, pack.size)
            handle.seek(offset)
            chunk = handle.read(min(chunk_size, UPLOAD_CHUNK))
            offset = _send(services, client, session, offset, chunk)
            sent += len(chunk)
    if on_progress:
        on_progress(pack.size, pack.size)
    version, created = (uploads.finish(services, session.id) if client is None else _complete(client, session))
    pack.file.unlink(missing_ok=True)
    return Uploaded(version, created, found, pack.size, sent, time.monotonic() - started)


def _latest(services: Services, name: str, workspace: str | None, client: Client | None) -> e.DataVersion | None:
    """The asset's latest version, or None when it has none yet."""
    try:
        if client is None:
            return services.data.version(_in_use(services, workspace, None), name)[0]
        return version_of(client.json("GET", f"/workspaces/{_in_use(services, workspace, client)}/data/{name}/versions/"
                                              "latest", retry=True))
    except (NotFound, RemoteError) as error:
        if isinstance(error, RemoteError) and error.code != NotFound.code:
            raise
        return None


def _in_use(services: Services, workspace: str | None, client: Client | None) -> str:
    """The workspace acted in: the one given, else the one chosen with `workspace use`, else `default` (made
    on first use in a local store; a server makes its own)."""
    return services.workspaces.in_use(workspace, here=client is None)[0]


def _complete(client: Client, session: uploads.Upload) -> tuple[e.DataVersion, bool]:
    """Ask the server to finish the upload; while an earlier request of ours still unpacks it, ask again."""
    deadline = time.monotonic() + COMPLETE_WAIT_S
    while True:
        try:
            done = client.json("POST", f"/workspaces/{session.workspace}/data/uploads/{session.id}/complete",
                               retry=True)
            return version_of(done["version"]), bool(done["created"])
        except RemoteError as error:
            if error.code != Busy.code or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def _send(services: Services, client: Client | None, session: uploads.Upload, offset: int, chunk: bytes) -> int:
    """Send one chunk; the new offset. A chunk the server already has (a retry after a lost answer) is
    not sent twice: the server's offset says where to go on."""
    if client is None:
        return uploads.append(services, session.id, offset, chunk).offset
    path = f"/workspaces/{session.workspace}/data/uploads/{session.id}"
    try:
        return int(client.json("PUT", path, params={"offset": offset}, content=chunk,
                               headers={"Content-Type": "application/octet-stream"})["offset"])
    except Exception:  # noqa: BLE001 - whatever went wrong, the server's offset tells what arrived
        answered = int(client.json("GET", path, retry=True)["offset"])
        if answered == offset:
            raise
        return answered


def _upload_of(body: dict[str, Any]) -> uploads.Upload:
    existing = body.get("existing")
    return uploads.Upload(body["id"], body["workspace"], body["name"], body["size"], body["sha256"], body["offset"],
                          version_of(existing) if existing else None)


def version_of(body: dict[str, Any]) -> e.DataVersion:
    """A version as the API sends it, as the entity the store gives."""
    return e.DataVersion(body["asset"], body["version"], body["digest"], body["images"], body["size"],
                         dict(body["labels"]), dict(body["report"]), datetime.fromisoformat(body["created_at"]))


def asset_of(body: dict[str, Any]) -> e.DataAsset:
    return e.DataAsset(body["id"], body.get("workspace", ""), body["name"], datetime.fromisoformat(body["created_at"]),
                       datetime.fromisoformat(body["updated_at"]), tuple(version_of(v) for v in body["versions"]))


# --- reading and deleting ---------------------------------------------------------------------------------
def assets(services: Services, workspace: str | None = None, client: Client | None = None) -> list[e.DataAsset]:
    if client is not None:
        return [asset_of(a) for a in client.json("GET", f"/workspaces/{_in_use(services, workspace, client)}/data")]
    return services.data.list(_in_use(services, workspace, None))


def show(services: Services, name: str, workspace: str | None = None, client: Client | None = None) -> e.DataAsset:
    names.data_name(name)
    if client is not None:
        return asset_of(client.json("GET", f"/workspaces/{_in_use(services, workspace, client)}/data/{name}"))
    return services.data.get(_in_use(services, workspace, None), name)


def version(services: Services, reference: str, workspace: str | None = None, client: Client | None = None
            ) -> e.DataVersion:
    """The version `reference` means: NAME (the latest) or NAME:VERSION."""
    name, which = names.data_ref(reference)
    if client is not None:
        path = f"/workspaces/{_in_use(services, workspace, client)}/data/{name}/versions/{which or 'latest'}"
        return version_of(client.json("GET", path))
    return services.data.version(_in_use(services, workspace, None), name, which)[0]


def delete(services: Services, reference: str, workspace: str | None = None, client: Client | None = None
           ) -> list[int]:
    """Delete a version (pets:2) or every version (pets); refused while an active run trains on one."""
    name, which = names.data_ref(reference)
    if client is not None:
        path = f"/workspaces/{_in_use(services, workspace, client)}/data/{name}"
        return list(client.json("DELETE", path + (f"/versions/{which}" if which else ""))["deleted"])
    return services.data.delete(_in_use(services, workspace, None), name, which)


def training_data(services: Services, reference: str, workspace: str) -> tuple[e.DataVersion, Path]:
    """The version `reference` means in `workspace`, and the manifest a training of it reads."""
    name, which = names.data_ref(reference)
    found, folder = services.data.version(workspace, name, which)
    return found, folder / DATA_FILE


# --- downloads --------------------------------------------------------------------------------------------
def pack_version(services: Services, reference: str, workspace: str | None = None) -> tuple[e.DataVersion, Path]:
    """A version packed again (manifest.json and images at their paths) into a temporary file the caller removes."""
    name, which = names.data_ref(reference)
    found, folder = services.data.version(_in_use(services, workspace, None), name, which)
    listed = json.loads((folder / datapack.MANIFEST).read_text())["files"]
    entries = [datapack.Entry(x["path"], x["label"], x["sha256"], x["size"]) for x in listed]
    with tempfile.NamedTemporaryFile(prefix="modelbuilder-data-", suffix=".zip", delete=False) as handle:
        target = Path(handle.name)
    try:
        datapack.write_pack(target, entries, {x.path: folder / ingest.stored_name(x.sha256, x.path) for x in entries})
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return found, target


def download(services: Services, reference: str, output: str | Path, workspace: str | None = None,
             client: Client | None = None) -> tuple[e.DataVersion, Path]:
    """The version's images into `output`, at their paths (one folder per label for a folder upload), with
    `labels.tsv` (ImageSource, Label) beside them, so `train --data output` or `output/labels.tsv` trains."""
    name, which = names.data_ref(reference)
    target = Path(output).expanduser()
    with tempfile.TemporaryDirectory(prefix="modelbuilder-data-") as tmp:
        if client is not None:
            found = version(services, reference, workspace, client)
            packed = client.download(f"/workspaces/{_in_use(services, workspace, client)}/data/{name}/versions/"
                                     f"{found.version}/download", Path(tmp) / "pack.zip")
        else:
            found, packed = pack_version(services, reference, workspace)
            shutil.move(packed, Path(tmp) / "pack.zip")
            packed = Path(tmp) / "pack.zip"
        _unpack(packed, target)
    return found, target


def _unpack(packed: Path, target: Path) -> None:
    with zipfile.ZipFile(packed) as archive:
        ingest.check_members(archive.infolist(), 1 << 62)
        listed = json.loads(archive.read(datapack.MANIFEST))["files"]
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        rows = []
        for item in listed:
            path = (root / item["path"]).resolve()
            if not path.is_relative_to(root):
                raise InvalidInput(f"The download names a path out of its folder: {item['path'][:80]!r}.",
                                   "report this server; nothing was written outside the folder.")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(datapack.IMAGES + item["path"]))
            rows.append(f"{item['path']}\t{item['label']}\n")
        (root / "labels.tsv").write_text("ImageSource\tLabel\n" + "".join(rows))
