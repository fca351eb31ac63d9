"""`/api/v1/runs`: submit a run, list runs with filters, show one, cancel it, read its status history.

A submission names the data to train on (a path on the server host: the training data, read by the
worker) and never where results go: a run's artifacts live in a folder derived from its id.
"""

from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, status

from modelbuilder import names
from modelbuilder.errors import DataError, InvalidInput, NotFound
from modelbuilder.server.deps import RunDep, ServicesDep
from modelbuilder.server.schemas import (
    COMPUTE_PATTERN,
    EXPERIMENT_PATTERN,
    IDEMPOTENCY_PATTERN,
    WORKSPACE_PATTERN,
    RunCreate,
    RunPublic,
    StatusChangePublic,
)

router = APIRouter(prefix="/runs", tags=["runs"])
RunStatus = Literal["Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled", "Preempted"]


def _recipe(body: RunCreate) -> dict[str, object]:
    """The submitted recipe as TrainConfig validates and stores it (absolute data paths, a project name)."""
    from modelbuilder.training.recipe import TrainConfig

    values = body.recipe.model_dump(exclude_none=True)
    for key in ("data", "validation_data"):
        if key in values:
            path = FsPath(os.path.normpath(values[key]))
            if not path.exists():
                raise DataError(f"Training data {str(path)[:200]!r} ({key}) does not exist on the server host.",
                                "give the absolute path of a folder of labeled images (or a .tsv/.csv manifest) "
                                "on the machine that runs the server.")
            values[key] = str(path)
    values.setdefault("name", names.project_name_from(FsPath(values["data"]).stem))
    return TrainConfig.from_dict(values).to_dict()


@router.post("", status_code=status.HTTP_201_CREATED)
def submit_run(
    body: RunCreate,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_PATTERN)] = None,
) -> RunPublic:
    """Queue a run of `experiment` (registered now if new) on `compute`; an agent starts it when there is room.

    Submitting again with the same idempotency key returns the same run; a different request under a
    used key is 409.
    """
    key = body.idempotency_key or idempotency_key
    if body.idempotency_key and idempotency_key and body.idempotency_key != idempotency_key:
        raise InvalidInput("The Idempotency-Key header and the body's idempotency_key differ.",
                           "send the key once, in either place.")
    recipe = _recipe(body)
    if body.workspace == "default":
        try:
            services.workspaces.get("default")
        except NotFound:
            services.workspaces.ensure_default()
    run = services.runs.submit(body.workspace, body.experiment, body.compute, recipe,
                               project_name=str(recipe["name"]), idempotency_key=key)
    return services.run_public(run)


@router.get("")
def list_runs(
    services: ServicesDep,
    workspace: Annotated[str, Query(pattern=WORKSPACE_PATTERN)] = "default",
    experiment: Annotated[str | None, Query(pattern=EXPERIMENT_PATTERN)] = None,
    status_: Annotated[RunStatus | None, Query(alias="status")] = None,
    compute: Annotated[str | None, Query(pattern=COMPUTE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunPublic]:
    """The workspace's runs, newest first."""
    runs = services.runs.list(workspace, experiment=experiment, status=status_, compute=compute, limit=limit)
    names_by_id = services.workspace_names()
    return [services.run_public(run, names_by_id) for run in runs]


@router.get("/{run_id}")
def show_run(run: RunDep, services: ServicesDep) -> RunPublic:
    return services.run_public(run)


@router.post("/{run_id}/cancel")
def cancel_run(run: RunDep, services: ServicesDep) -> RunPublic:
    """Cancel: a queued run ends now; a running one stops at its next step, keeping its best model so far.

    409 when the run already ended (Completed or Failed).
    """
    return services.run_public(services.runs.request_cancel(run.id))


@router.get("/{run_id}/history")
def run_history(run: RunDep, services: ServicesDep) -> list[StatusChangePublic]:
    """Every status change of the run, oldest first, with its time and reason."""
    return [StatusChangePublic.of(change) for change in services.runs.history(run.id)]

