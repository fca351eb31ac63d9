"""`/api/v1/workspaces/{workspace}/experiments`: list and show experiments (a run's submission registers them)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Path

from modelbuilder.server.deps import ServicesDep
from modelbuilder.server.routers.workspaces import WorkspacePath
from modelbuilder.server.schemas import EXPERIMENT_PATTERN, ExperimentPublic

router = APIRouter(prefix="/workspaces/{workspace}/experiments", tags=["experiments"])
RUN_COUNT_LIMIT = 10_000


@router.get("")
def list_experiments(workspace: WorkspacePath, services: ServicesDep) -> list[ExperimentPublic]:
    experiments = services.workspaces.list_experiments(workspace)
    counts = Counter(run.experiment_name for run in services.runs.list(workspace, limit=RUN_COUNT_LIMIT))
    return [ExperimentPublic(id=x.id, workspace=workspace, name=x.name, created_at=x.created_at,
                             runs=counts[x.name]) for x in experiments]


@router.get("/{experiment}")
def show_experiment(
    workspace: WorkspacePath,
    experiment: Annotated[str, Path(pattern=EXPERIMENT_PATTERN)],
    services: ServicesDep,
) -> ExperimentPublic:
    x = services.workspaces.get_experiment(workspace, experiment)
    runs = services.runs.list(workspace, experiment=experiment, limit=RUN_COUNT_LIMIT)
    return ExperimentPublic(id=x.id, workspace=workspace, name=x.name, created_at=x.created_at, runs=len(runs))
