"""`/api/v1/workspaces/{workspace}/data`: data assets, with the CLI's and the SDK's rules and errors
(`sdk.data`, `sdk.uploads`): resumable uploads in chunks, list, show, download, delete.

    POST   .../data/uploads                 {name, size, sha256, digest?} -> the upload, and its offset
    GET    .../data/uploads/{id}            the offset received so far (to resume)
    PUT    .../data/uploads/{id}?offset=N   one chunk (application/octet-stream, at most 8 MiB)
    POST   .../data/uploads/{id}/complete   checked, unpacked (sdk.ingest): the version made
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from modelbuilder.config import UPLOAD_CHUNK
from modelbuilder.core import entities as e
from modelbuilder.sdk import data, uploads
from modelbuilder.server.deps import ServicesDep
from modelbuilder.server.downloads import disposition
from modelbuilder.server.routers.workspaces import WorkspacePath
from modelbuilder.server.schemas import MODEL_NAME_PATTERN

router = APIRouter(prefix="/workspaces/{workspace}/data", tags=["data"])

NamePath = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="The data asset's name.")]
WhichPath = Annotated[str, Path(pattern=r"^([0-9]{1,10}|latest)$", description="A version number, or latest.")]
UploadPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The upload's id.")]


class DataVersionPublic(BaseModel):
    asset: str
    version: int
    ref: str = Field(description="NAME:VERSION, as `train --data` takes it.")
    digest: str = Field(description="SHA-256 of the content: every image's path, label and SHA-256.")
    images: int
    size: int = Field(description="Bytes of the images kept.")
    labels: dict[str, int] = Field(description="Images per label.")
    report: dict[str, Any] = Field(description="The data report of the upload: skipped files and why, exact "
                                               "copies, label balance, and one summary line per finding.")
    created_at: datetime

    @classmethod
    def of(cls, version: e.DataVersion) -> DataVersionPublic:
        return cls(asset=version.asset, version=version.version, ref=version.ref, digest=version.digest,
                   images=version.images, size=version.size, labels=version.labels, report=version.report,
                   created_at=version.created_at)


class DataAssetPublic(BaseModel):
    id: str
    workspace: str
    name: str
    created_at: datetime
    updated_at: datetime
    versions: list[DataVersionPublic] = Field(description="Newest first.")

    @classmethod
    def of(cls, asset: e.DataAsset, workspace: str) -> DataAssetPublic:
        return cls(id=asset.id, workspace=workspace, name=asset.name, created_at=asset.created_at,
                   updated_at=asset.updated_at, versions=[DataVersionPublic.of(v) for v in asset.versions])


class UploadCreate(BaseModel):
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="The data asset this upload becomes a version of.")
    size: int = Field(ge=1, description="Bytes of the zip.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                               description="SHA-256 of the zip: checked at the end, and what lets the same upload "
                                           "started again resume (without it, only its id does).")
    digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                               description="The content's digest: when it equals the latest version's, nothing is "
                                           "sent and that version is answered as `existing`.")


class UploadPublic(BaseModel):
    id: str
    workspace: str
    name: str
    size: int
    sha256: str | None
    offset: int = Field(description="Bytes received so far: the next chunk starts here.")
    chunk_size: int = UPLOAD_CHUNK
    existing: DataVersionPublic | None = None

    @classmethod
    def of(cls, upload: uploads.Upload) -> UploadPublic:
        return cls(id=upload.id, workspace=upload.workspace, name=upload.name, size=upload.size,
                   sha256=upload.sha256, offset=upload.offset,
                   existing=DataVersionPublic.of(upload.existing) if upload.existing else None)


class UploadDone(BaseModel):
    version: DataVersionPublic
    created: bool = Field(description="False when the content equals the latest version's (no new version).")


class Deleted(BaseModel):
    deleted: list[int]


def _which(which: str) -> str:
    return "" if which == "latest" else f":{which}"


@router.get("")
def list_data(workspace: WorkspacePath, services: ServicesDep) -> list[DataAssetPublic]:
    return [DataAssetPublic.of(a, workspace) for a in data.assets(services, workspace)]


@router.post("/uploads", status_code=status.HTTP_201_CREATED)
def start_upload(workspace: WorkspacePath, body: UploadCreate, services: ServicesDep) -> UploadPublic:
    """Start an upload, or find the one already started for the same name, size and SHA-256 (to resume it)."""
    return UploadPublic.of(uploads.start(services, body.name, body.size, body.sha256, workspace=workspace,
                                         digest=body.digest))


@router.get("/uploads/{upload_id}")
def upload_status(workspace: WorkspacePath, upload_id: UploadPath, services: ServicesDep) -> UploadPublic:
    return UploadPublic.of(uploads.status(services, upload_id, workspace))


@router.put("/uploads/{upload_id}", openapi_extra={"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload_chunk(workspace: WorkspacePath, upload_id: UploadPath, request: Request, services: ServicesDep,
                       offset: Annotated[int, Query(ge=0)]) -> UploadPublic:
    """One chunk, which must start at the upload's offset (409 with the right offset otherwise)."""
    chunk = await request.body()
    appended = await anyio.to_thread.run_sync(uploads.append, services, upload_id, offset, chunk, workspace)
    return UploadPublic.of(appended)


@router.post("/uploads/{upload_id}/complete")
def complete_upload(workspace: WorkspacePath, upload_id: UploadPath, services: ServicesDep) -> UploadDone:
    """Check the zip (size, SHA-256, every member) and make it the next version (or find the same content).
    Asked again, the same answer; 409 `busy` while an earlier request still unpacks it."""
    version, created = uploads.finish(services, upload_id, workspace)
    return UploadDone(version=DataVersionPublic.of(version), created=created)


@router.get("/{name}")
def show_data(workspace: WorkspacePath, name: NamePath, services: ServicesDep) -> DataAssetPublic:
    return DataAssetPublic.of(data.show(services, name, workspace), workspace)


@router.get("/{name}/versions/{which}")
def show_version(workspace: WorkspacePath, name: NamePath, which: WhichPath, services: ServicesDep
                 ) -> DataVersionPublic:
    return DataVersionPublic.of(data.version(services, name + _which(which), workspace))


@router.get("/{name}/versions/{which}/download", response_class=FileResponse,
            responses={200: {"content": {"application/zip": {}}, "description": "manifest.json and the images."}})
def download_version(workspace: WorkspacePath, name: NamePath, which: WhichPath, services: ServicesDep
                     ) -> FileResponse:
    """The version packed again: manifest.json (each image's path, label and SHA-256) and the images."""
    version, packed = data.pack_version(services, name + _which(which), workspace)
    return FileResponse(packed, media_type="application/zip", background=BackgroundTask(FilePath(packed).unlink),
                        headers={"Content-Disposition": disposition(f"{name}-{version.version}.zip", inline=False),
                                 "Cache-Control": "no-store"})


@router.delete("/{name}")
def delete_data(workspace: WorkspacePath, name: NamePath, services: ServicesDep) -> Deleted:
    """Every version of the asset; 409 while a queued or running run trains on one of them."""
    return Deleted(deleted=data.delete(services, name, workspace))


@router.delete("/{name}/versions/{which}")
def delete_version(workspace: WorkspacePath, name: NamePath, which: Annotated[int, Path(ge=1)],
                   services: ServicesDep) -> Deleted:
    return Deleted(deleted=data.delete(services, f"{name}:{which}", workspace))
