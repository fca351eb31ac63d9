"""Data assets: a name with numbered versions (1, 2, ...) of uploaded training images, kept under the
artifact root, and the runs that train on them.

    <artifact root>/data/<asset id>/<version>/   data.tsv (ImageSource, Label), manifest.json, files/...

A version's folder is made by the application layer (`sdk.ingest`) in a staging folder and handed over
whole: `add_version` moves it into place inside the write that numbers it, with the asset's row locked
(SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE), so two uploads at the same
moment get two numbers. Content that equals the latest version's (the same digest) makes no new version.
A version (or a whole asset) cannot be deleted while a queued or running run trains on it.
"""

from __future__ import annotations

import builtins
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session

from modelbuilder import names
from modelbuilder.core import _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.store import Store
from modelbuilder.errors import Conflict, NotFound, step

DATA_FOLDER = "data"  # under the artifact root
STAGING = ".staging"
DATA_FILE = "data.tsv"  # a version's manifest as training reads it (ImageSource, Label, Name: the upload's path)


class DataAssetService:
    def __init__(self, store: Store, artifact_root: str | os.PathLike[str]) -> None:
        self.store = store
        self.root = Path(artifact_root).expanduser().resolve() / DATA_FOLDER

    # --- folders ------------------------------------------------------------------------------------
    def staging_folder(self) -> Path:
        """A new, empty folder to build a version in (on the same file system as the versions)."""
        folder = self.root / STAGING / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    def folder(self, asset_id: str, version: int) -> Path:
        return self.root / asset_id / str(names.data_version(version))

    # --- writing ------------------------------------------------------------------------------------
    def add_version(self, workspace: str, name: str, staged: Path, *, digest: str, images: int, size: int,
                    labels: dict[str, int], report: dict[str, Any]) -> tuple[e.DataVersion, bool]:
        """The staged folder as the next version of `name` (made on first use); (version, True). When the
        latest version has the same digest, the staged folder is removed and (that version, False) returned."""
        names.data_name(name)
        try:
            with self.store.write() as session:
                ws = _lookup.workspace_row(session, workspace)
                asset = _lookup.ensure_named_row(self.store, session, ASSETS, ws, name, "data", lock=True)
                latest = session.scalars(select(r.DataVersionRow).where(r.DataVersionRow.asset_id == asset.id)
                                         .order_by(r.DataVersionRow.version.desc()).limit(1)).one_or_none()
                if latest is not None and latest.digest == digest:
                    return _version(name, latest), False
                now = e.utcnow()
                row = r.DataVersionRow(asset_id=asset.id, version=(latest.version if latest else 0) + 1,
                                       digest=digest, images=images, size=size, labels=dict(labels),
                                       report=dict(report), created_at=now)
                session.add(row)
                asset.updated_at = now
                session.flush()
                target = self.folder(asset.id, row.version)
                if target.exists():  # left by a version whose write failed after its move
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
                return _version(name, row), True
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)

    def delete(self, workspace: str, name: str, version: int | None = None) -> builtins.list[int]:
        """Delete one version, or the whole asset (version None); the versions deleted. Refused (Conflict)
        while a run that has not ended trains on one of them."""
        with self.store.write() as session:
            asset = self._asset(session, workspace, name)
            numbers = [v for v in session.scalars(select(r.DataVersionRow.version)  # locked: see link_run
                                                  .where(r.DataVersionRow.asset_id == asset.id).with_for_update())
                       if version is None or v == version]
            if version is not None and not numbers:
                raise NotFound(f"Data asset {name!r} has no version {version}.",
                               "pick one of its versions ({show}).", _show(workspace, name))
            users = session.execute(
                select(r.RunDataRow.run_id, r.RunDataRow.version, r.RunRow.status)
                .join(r.RunRow, r.RunRow.id == r.RunDataRow.run_id)
                .where(r.RunDataRow.asset_id == asset.id, r.RunDataRow.version.in_(numbers),
                       r.RunRow.status.in_(sorted(e.ACTIVE)))).all()
            if users:
                run_id, used, status = users[0]
                raise Conflict(f"Data asset {name}:{used} is in use by run {run_id} ({status}); "
                               f"{len(users)} active run(s) train on what you asked to delete.",
                               "wait for the run to end, or cancel it ({cancel}), then delete again.",
                               {"cancel": step("cancel_run", run=run_id)})
            if version is None:
                session.delete(asset)
            else:
                session.execute(delete(r.DataVersionRow).where(r.DataVersionRow.asset_id == asset.id,
                                                               r.DataVersionRow.version == version))
                asset.updated_at = e.utcnow()
            asset_id = asset.id
        for number in numbers:
            shutil.rmtree(self.folder(asset_id, number), ignore_errors=True)
        if version is None:
            shutil.rmtree(self.root / asset_id, ignore_errors=True)
        return sorted(numbers)

    # --- reading ------------------------------------------------------------------------------------
    def list(self, workspace: str) -> builtins.list[e.DataAsset]:
        """The workspace's assets by name, each with its versions, in two queries however many there are."""
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            rows = session.scalars(select(r.DataAssetRow).where(r.DataAssetRow.workspace_id == ws.id)
                                   .order_by(r.DataAssetRow.name)).all()
            versions: dict[str, builtins.list[r.DataVersionRow]] = {row.id: [] for row in rows}
            for version in session.scalars(
                    select(r.DataVersionRow).join(r.DataAssetRow, r.DataAssetRow.id == r.DataVersionRow.asset_id)
                    .where(r.DataAssetRow.workspace_id == ws.id).order_by(r.DataVersionRow.version.desc())):
                versions[version.asset_id].append(version)
            return [_asset_entity(row, versions[row.id]) for row in rows]

    def list_all(self) -> builtins.list[e.DataAssetSummary]:
        """Every asset of every workspace with its latest version, last changed first (the portal's home page),
        in one query."""
        latest = (select(r.DataVersionRow.asset_id, func.max(r.DataVersionRow.version).label("version"))
                  .group_by(r.DataVersionRow.asset_id).subquery())
        query = (select(r.DataAssetRow.name, r.WorkspaceRow.name, r.DataVersionRow)
                 .join(r.WorkspaceRow, r.WorkspaceRow.id == r.DataAssetRow.workspace_id)
                 .outerjoin(latest, latest.c.asset_id == r.DataAssetRow.id)
                 .outerjoin(r.DataVersionRow, and_(r.DataVersionRow.asset_id == latest.c.asset_id,
                                                   r.DataVersionRow.version == latest.c.version))
                 .order_by(r.DataAssetRow.updated_at.desc()))
        with self.store.read() as session:
            return [e.DataAssetSummary(workspace, name, _version(name, row) if row is not None else None)
                    for name, workspace, row in session.execute(query)]

    def get(self, workspace: str, name: str) -> e.DataAsset:
        with self.store.read() as session:
            return self._entity(session, self._asset(session, workspace, name))

    def version(self, workspace: str, name: str, which: int | None = None) -> tuple[e.DataVersion, Path]:
        """A version by number, or the latest (None), and its folder."""
        with self.store.read() as session:
            asset = self._asset(session, workspace, name)
            number = which if which is not None else session.scalar(
                select(func.max(r.DataVersionRow.version)).where(r.DataVersionRow.asset_id == asset.id))
            row = session.get(r.DataVersionRow, (asset.id, number)) if number is not None else None
            if row is None:
                raise NotFound(f"Data asset {name!r} has no version {which}." if which is not None
                               else f"Data asset {name!r} has no versions.",
                               "pick one of its versions ({show}).", _show(workspace, name))
            return _version(name, row), self.folder(asset.id, row.version)

    def run_data(self, run_id: str) -> tuple[str, int] | None:
        """The asset name and version a run trains on, if it trains on one."""
        with self.store.read() as session:
            found = session.execute(select(r.DataAssetRow.name, r.RunDataRow.version)
                                    .join(r.DataAssetRow, r.DataAssetRow.id == r.RunDataRow.asset_id)
                                    .where(r.RunDataRow.run_id == run_id)).one_or_none()
            return (found[0], found[1]) if found else None

    def run_data_file(self, run_id: str) -> Path | None:
        """The data.tsv of the version a run trains on, under this process's artifact root (a worker's root
        may be mounted elsewhere than the submitter's); None for a run on a path."""
        with self.store.read() as session:
            link = session.get(r.RunDataRow, run_id)
            return self.folder(link.asset_id, link.version) / DATA_FILE if link is not None else None

    # --- inside a session ---------------------------------------------------------------------------
    def _asset(self, session: Session, workspace: str, name: str) -> r.DataAssetRow:
        names.data_name(name)
        return _lookup.named_row(session, ASSETS, _lookup.workspace_row(session, workspace), name)

    def _entity(self, session: Session, row: r.DataAssetRow) -> e.DataAsset:
        return _asset_entity(row, session.scalars(select(r.DataVersionRow).where(r.DataVersionRow.asset_id == row.id)
                                                  .order_by(r.DataVersionRow.version.desc())))


def _asset_entity(row: r.DataAssetRow, versions: Iterable[r.DataVersionRow]) -> e.DataAsset:
    """An asset with its versions (newest first)."""
    return e.DataAsset(row.id, row.workspace_id, row.name, row.created_at, row.updated_at,
                       tuple(_version(row.name, v) for v in versions))


def _version(name: str, row: r.DataVersionRow) -> e.DataVersion:
    return e.DataVersion(name, row.version, row.digest, row.images, row.size, dict(row.labels), dict(row.report),
                         row.created_at)


def _show(workspace: str, name: str) -> dict[str, Any]:
    return {"show": step("show_data", workspace=workspace, data=name)}


def link_run(session: Session, workspace: r.WorkspaceRow, run_id: str, name: str, version: int) -> None:
    """Inside the transaction that queues a run: note that it trains on `name:version`, which must still
    exist. The version's row is locked for sharing (PostgreSQL; SQLite's writers take turns anyway), as
    `DataAssetService.delete` locks it for update before it looks for the runs that use it."""
    asset = _lookup.named_row(session, ASSETS, workspace, name)
    if session.get(r.DataVersionRow, (asset.id, version), with_for_update={"read": True}) is None:
        raise NotFound(f"Data asset {name}:{version} no longer exists in workspace {workspace.name!r} (it was "
                       "deleted).", "pick one of its versions ({show}).", _show(workspace.name, name))
    session.add(r.RunDataRow(run_id=run_id, asset_id=asset.id, version=version))


def _no_asset(workspace: str, name: str) -> NotFound:
    return NotFound(f"There is no data asset {name!r} in workspace {workspace!r}.",
                    "list the data assets ({list}), or upload this one.",
                    {"list": step("list_data", workspace=workspace)})


ASSETS = _lookup.NamedKind(r.DataAssetRow, _no_asset)
