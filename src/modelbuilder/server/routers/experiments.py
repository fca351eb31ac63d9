"""`/api/v1/workspaces/{workspace}/experiments`: list and show experiments (a run's submission registers them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from modelbuilder.sdk import workspaces
from modelbuilder.server.deps import ServicesDep
from modelbuilder.server.routers.workspaces import WorkspacePath
from modelbuilder.server.schemas import EXPERIMENT_PATTERN, ExperimentPublic

router = APIRouter(prefix="/workspaces/{workspace}/experiments", tags=["experiments"])


@router.get("")
def list_experiments(workspace: WorkspacePath, services: ServicesDep) -> list[ExperimentPublic]:
    return [ExperimentPublic.of(summary, workspace) for summary in workspaces.experiments(services, workspace)]


@router.get("/{experiment}")
def show_experiment(
    workspace: WorkspacePath,
    experiment: Annotated[str, Path(pattern=EXPERIMENT_PATTERN)],
    services: ServicesDep,
) -> ExperimentPublic:
    return ExperimentPublic.of(workspaces.experiment_summary(services, workspace, experiment), workspace)
