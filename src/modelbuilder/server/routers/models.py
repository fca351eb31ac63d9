"""`/api/v1/workspaces/{workspace}/models`: registered models, with the CLI's and the SDK's rules and errors
(`sdk.registry`): register a finished run as the next version, list, show, alias, download, and predict
with the version a number or an alias names."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import StreamingResponse

from modelbuilder.sdk import registry
from modelbuilder.server.deps import ImageUpload, ServicesDep, StateDep
from modelbuilder.server.downloads import chunks, disposition
from modelbuilder.server.routers.workspaces import WorkspacePath
from modelbuilder.server.schemas import (
    MODEL_ALIAS_PATTERN,
    MODEL_NAME_PATTERN,
    MODEL_WHICH_PATTERN,
    ModelAliasSet,
    ModelRegister,
    ModelVersionPublic,
    PredictionPublic,
    RegisteredModelPublic,
)

router = APIRouter(prefix="/workspaces/{workspace}/models", tags=["models"])

NamePath = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="The registered model's name.")]
WhichPath = Annotated[str, Path(pattern=MODEL_WHICH_PATTERN, description="A version number, or an alias.")]
AliasPath = Annotated[str, Path(pattern=MODEL_ALIAS_PATTERN, description="An alias, for example production.")]


@router.get("")
def list_models(workspace: WorkspacePath, services: ServicesDep) -> list[RegisteredModelPublic]:
    return [RegisteredModelPublic.of(m, workspace) for m in registry.models(services, workspace)]


@router.post("", status_code=status.HTTP_201_CREATED)
def register_model(workspace: WorkspacePath, body: ModelRegister, services: ServicesDep) -> ModelVersionPublic:
    """Register a finished run's result as the next version of `name` (1 for a new name). 409 while the run
    has no results."""
    return ModelVersionPublic.of(registry.register(services, body.run_id, body.name, alias=body.alias,
                                                   workspace=workspace))


@router.get("/{name}")
def show_model(workspace: WorkspacePath, name: NamePath, services: ServicesDep) -> RegisteredModelPublic:
    return RegisteredModelPublic.of(registry.show(services, name, workspace), workspace)


@router.get("/{name}/versions/{which}")
def show_version(workspace: WorkspacePath, name: NamePath, which: WhichPath,
                 services: ServicesDep) -> ModelVersionPublic:
    """A version by its number, or the version an alias names."""
    return ModelVersionPublic.of(registry.resolve(services, f"{name}:{which}", workspace))


@router.put("/{name}/aliases/{alias}")
def set_alias(workspace: WorkspacePath, name: NamePath, alias: AliasPath, body: ModelAliasSet,
              services: ServicesDep) -> ModelVersionPublic:
    """Point the alias at a version (made, or moved)."""
    return ModelVersionPublic.of(registry.set_alias(services, f"{name}:{body.version}", alias, workspace))


@router.delete("/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def remove_alias(workspace: WorkspacePath, name: NamePath, alias: AliasPath, services: ServicesDep) -> Response:
    registry.remove_alias(services, name, alias, workspace)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/versions/{which}/predict", response_model_exclude_none=True)
def predict_with_version(
    workspace: WorkspacePath, name: NamePath, which: WhichPath, services: ServicesDep, state: StateDep,
    data: ImageUpload,
) -> PredictionPublic:
    """Classify one image with the version a number or an alias names (pets/versions/production/predict)."""
    version = registry.resolve(services, f"{name}:{which}", workspace)
    engine = state.engines.get(version.run_id, registry.model_zip(services, version))
    return PredictionPublic.of(engine.predict(data), engine.labels)


@router.get("/{name}/versions/{which}/download", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}, "description": "The version's result."}})
def download_version(workspace: WorkspacePath, name: NamePath, which: WhichPath,
                     services: ServicesDep) -> StreamingResponse:
    """One zip: the version's MLModel.zip, bestModel.onnx, bestModelMap.json and its generated projects, which
    carry the version's number (as `modelbuilder models download` writes them)."""
    with tempfile.TemporaryDirectory(prefix="modelbuilder-model-") as tmp:
        root = FilePath(tmp)
        version, _ = registry.download(services, f"{name}:{which}", root, workspace)
        handle = tempfile.TemporaryFile()
        try:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                    archive.write(path, path.relative_to(root).as_posix())
            size = handle.tell()
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
    return StreamingResponse(chunks(handle), media_type="application/zip", headers={
        "Content-Length": str(size),
        "Content-Disposition": disposition(f"{version.model}-{version.version}.zip", inline=False),
        "Cache-Control": "no-store",
    })
