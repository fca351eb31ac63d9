"""`/api/v1/workspaces`: create, list, show and delete workspaces (with the CLI's rules and errors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from modelbuilder.sdk import workspaces
from modelbuilder.server.deps import ServicesDep
from modelbuilder.server.schemas import WORKSPACE_PATTERN, WorkspaceCreate, WorkspaceDeleted, WorkspacePublic

router = APIRouter(prefix="/workspaces", tags=["workspaces"])

WorkspaceName = Annotated[str, Path(pattern=WORKSPACE_PATTERN, description="The workspace's name.")]


def _in_use(workspace: WorkspaceName, services: ServicesDep) -> str:
    """The workspace a request's path names; `default` is made on first use, with its local compute, as the
    CLI makes it (`WorkspaceService.in_use`), so a client's first request to a new server finds it."""
    return services.workspaces.in_use(workspace)[0]


WorkspacePath = Annotated[str, Depends(_in_use)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_workspace(body: WorkspaceCreate, services: ServicesDep) -> WorkspacePublic:
    """Create a workspace. 409 when the name is taken."""
    return WorkspacePublic.of(services.workspaces.create(body.name, body.region, body.resource_group))


@router.get("")
def list_workspaces(services: ServicesDep) -> list[WorkspacePublic]:
    return [WorkspacePublic.of(ws) for ws in services.workspaces.list()]


@router.get("/{workspace}")
def show_workspace(workspace: WorkspacePath, services: ServicesDep) -> WorkspacePublic:
    return WorkspacePublic.of(services.workspaces.get(workspace))


@router.delete("/{workspace}")
def delete_workspace(
    workspace: WorkspaceName,
    services: ServicesDep,
    force: Annotated[bool, Query(description="Cancel its runs that have not ended, then delete.")] = False,
) -> WorkspaceDeleted:
    """Delete a workspace with its experiments, computes, runs and their artifacts.

    409 while some of its runs have not ended, unless `force`.
    """
    return WorkspaceDeleted(deleted=workspace, runs_deleted=workspaces.delete(services, workspace, force=force))
