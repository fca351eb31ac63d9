"""`/api/v1/runs`: submit a run, list runs with filters, show one, cancel it, read its status history.

A submission names the data to train on (a path on the server host: the training data, read by the
worker) and never where results go: a run's artifacts live in a folder derived from its id. It is
checked as the CLI's `train` and the SDK check it (`sdk.submit`): the same mistake, the same error.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, status

from modelbuilder.errors import InvalidInput
from modelbuilder.sdk import submit, sweep
from modelbuilder.server.deps import RunDep, ServicesDep, run_public
from modelbuilder.server.schemas import (
    COMPUTE_PATTERN,
    EXPERIMENT_PATTERN,
    IDEMPOTENCY_PATTERN,
    WORKSPACE_PATTERN,
    RunCreate,
    RunPublic,
    StatusChangePublic,
)
from modelbuilder.server.schemas_sweep import TrialPublic

router = APIRouter(prefix="/runs", tags=["runs"])
RunStatus = Literal["Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled", "Preempted"]


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
    recipe = submit.recipe_from(body.recipe.model_dump(exclude_none=True), assets_by_name=True)
    settings = sweep.sweep_settings(body.search.search, **body.search.options()) if body.search else None
    submitted = submit.submit(services, recipe, workspace=body.workspace, experiment=body.experiment,
                              compute=body.compute, idempotency_key=key, sweep=settings)
    return run_public(services, submitted.run)


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
    names_by_id = services.workspaces.names_by_id()
    return [run_public(services, run, names_by_id) for run in runs]


@router.get("/{run_id}")
def show_run(run: RunDep, services: ServicesDep) -> RunPublic:
    return run_public(services, run)


@router.post("/{run_id}/cancel")
def cancel_run(run: RunDep, services: ServicesDep) -> RunPublic:
    """Cancel: a queued run ends now; a running one stops at its next step, keeping its best model so far.

    409 when the run already ended (Completed or Failed).
    """
    return run_public(services, services.runs.request_cancel(run.id))


@router.get("/{run_id}/trials")
def run_trials(run: RunDep, services: ServicesDep) -> list[TrialPublic]:
    """A sweep's leaderboard: its trials, best first, with settings, accuracy, time, status and why each stopped."""
    return [TrialPublic.of(trial) for trial in sweep.leaderboard(services, run)]


@router.get("/{run_id}/history")
def run_history(run: RunDep, services: ServicesDep) -> list[StatusChangePublic]:
    """Every status change of the run, oldest first, with its time and reason."""
    return [StatusChangePublic.of(change) for change in services.runs.history(run.id)]

