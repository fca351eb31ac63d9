"""`/api/v1/workspaces/{workspace}/computes`: create, list, show, delete computes; `/api/v1/sizes`: the catalog.

Creating a compute whose size cannot be met still creates it: 201 with state Failed and its error,
exactly as the CLI leaves it (the name stays taken until the failed compute is deleted).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from modelbuilder.server.deps import ServicesDep
from modelbuilder.server.routers.workspaces import WorkspacePath
from modelbuilder.server.schemas import COMPUTE_PATTERN, ComputeCreate, ComputeDeleted, ComputePublic, SizePublic

router = APIRouter(tags=["computes"])
ComputePath = Annotated[str, Path(pattern=COMPUTE_PATTERN, description="The compute's name.")]


@router.post("/workspaces/{workspace}/computes", status_code=status.HTTP_201_CREATED)
def create_compute(workspace: WorkspacePath, body: ComputeCreate, services: ServicesDep) -> ComputePublic:
    """Create a compute and check its size can be met: state Succeeded, or Failed with `error`.

    409 when the name is taken (also by a Failed compute: delete it first, or use another name).
    """
    compute = services.computes.create(workspace, body.name, body.size, body.priority, body.kind, body.address)
    return ComputePublic.of(compute, workspace)


@router.get("/workspaces/{workspace}/computes")
def list_computes(workspace: WorkspacePath, services: ServicesDep) -> list[ComputePublic]:
    return [ComputePublic.of(c, workspace) for c in services.computes.list(workspace)]


@router.get("/workspaces/{workspace}/computes/{compute}")
def show_compute(workspace: WorkspacePath, compute: ComputePath, services: ServicesDep) -> ComputePublic:
    return ComputePublic.of(services.computes.get(workspace, compute), workspace)


@router.delete("/workspaces/{workspace}/computes/{compute}")
def delete_compute(
    workspace: WorkspacePath,
    compute: ComputePath,
    services: ServicesDep,
    force: Annotated[bool, Query(description="Cancel its runs that have not ended, then delete.")] = False,
) -> ComputeDeleted:
    """Delete a compute in any state. 409 while it has runs that have not ended, unless `force`."""
    canceled = services.computes.delete(workspace, compute, force=force)
    return ComputeDeleted(deleted=compute, canceled_runs=canceled)


@router.get("/sizes")
def list_sizes(services: ServicesDep) -> list[SizePublic]:
    """The size catalog; `auto` (this host) last."""
    return [SizePublic(**dataclasses.asdict(size),
                       price_per_hour_low_priority=services.computes.price_per_hour(size.name, "low-priority"))
            for size in services.computes.sizes()]
