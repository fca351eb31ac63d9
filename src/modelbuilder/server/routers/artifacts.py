"""`/api/v1/runs/{run_id}/artifacts` and `/bundle`: list a run's files, download one, or get the result
bundle (the two generated projects and the three assets) as one zip.

A download names a path *inside* the run's folder; it goes through `ArtifactStore.resolve` and is
refused (400) when it is absolute, has '..', backslashes, NUL, percent-escapes or leads out through a
link, and is 404 when it names nothing. Nothing outside the run's folder is ever read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from modelbuilder import names
from modelbuilder.sdk import results
from modelbuilder.server.deps import RunDep, ServicesDep
from modelbuilder.server.downloads import chunks, content_type, disposition, open_artifact, write_bundle
from modelbuilder.server.schemas import ArtifactPublic

router = APIRouter(prefix="/runs/{run_id}", tags=["artifacts"])
_FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
_BINARY = {"content": {"application/octet-stream": {}}, "description": "The file's bytes."}


@router.get("/artifacts")
def list_artifacts(run: RunDep, services: ServicesDep) -> list[ArtifactPublic]:
    """The run's files with size and SHA-256: as recorded when it ended, else what its folder holds now."""
    records = services.recorder.artifacts(run.id) or services.artifacts.list(run.id)
    return [ArtifactPublic.of(record) for record in records]


@router.get("/artifacts/{relpath:path}", response_class=StreamingResponse, responses={200: _BINARY})
def download_artifact(
    run: RunDep,
    relpath: Annotated[str, Path(description="A path inside the run's folder, e.g. bestModel.onnx or "
                                             "Tiny.ConsoleApp/main.py.")],
    services: ServicesDep,
) -> StreamingResponse:
    handle, size = open_artifact(services.artifacts, run.id, relpath)
    media_type, inline = content_type(relpath)
    return StreamingResponse(chunks(handle), media_type=media_type, headers={
        "Content-Length": str(size),
        "Content-Disposition": disposition(relpath.rsplit("/", 1)[-1], inline),
        "Content-Security-Policy": _FILE_CSP,
        "Cache-Control": "no-store",
    })


@router.get("/bundle", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}, "description": "The result bundle."}})
def download_bundle(run: RunDep, services: ServicesDep) -> StreamingResponse:
    """One zip: `<Name>.ConsoleApp/`, `<Name>.Model/`, `<Name>.WebApi/`, bestModel.onnx, bestModelMap.json and
    MLModel.zip.

    409 while the run has no results.
    """
    results.require_results(services, run)
    name = names.project_name(results.project_name(run))
    handle, size = write_bundle(services.artifacts, run.id, name)
    return StreamingResponse(chunks(handle), media_type="application/zip", headers={
        "Content-Length": str(size),
        "Content-Disposition": disposition(f"{name}-{run.id}.zip", inline=False),
        "Cache-Control": "no-store",
    })


