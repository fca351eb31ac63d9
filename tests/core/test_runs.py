from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core import compute as compute_module
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.entities import Run
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.runs import RunService
from modelbuilder.core.workspace import WorkspaceService
from modelbuilder.errors import Conflict, InvalidInput, NotFound, step
from tests.core.conftest import running as _running

if TYPE_CHECKING:
    from tests.core.conftest import Team

Recipe = dict[str, object]


def test_submit_queues_a_run_with_its_history(runs: RunService, team: Team, recipe: Recipe) -> None:
    run = runs.submit(team.workspace, "pets", team.dedicated, recipe, project_name="PetClassifier")
    assert run.status == "Queued"
    assert run.attempt == 0
    assert run.started_at is None
    assert (run.experiment_name, run.compute_name, run.compute_size, run.priority) == (
        "pets",
        "gpu-1",
        "auto",
        "dedicated",
    )
    assert run.recipe == recipe
    assert run.project_name == "PetClassifier"
    assert run.created_at.tzinfo is not None
    assert runs.get(run.id) == run
    [queued] = runs.history(run.id)
    assert queued.status == "Queued"
    assert "gpu-1" in queued.reason
    assert queued.at == run.created_at


def test_two_runs_join_one_experiment(runs: RunService, team: Team, recipe: Recipe) -> None:
    first = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    second = runs.submit(team.workspace, "pets", team.spot, {**recipe, "epochs": 5})
    other = runs.submit(team.workspace, "birds", team.dedicated, recipe)
    assert first.experiment_id == second.experiment_id != other.experiment_id
    assert {r.id for r in runs.list(team.workspace, experiment="pets")} == {first.id, second.id}
    assert [r.id for r in runs.list(team.workspace)] == [other.id, second.id, first.id]  # newest first


def test_list_filters_and_limits(runs: RunService, team: Team, recipe: Recipe) -> None:
    a = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    b = runs.submit(team.workspace, "pets", team.spot, recipe)
    runs.request_cancel(a.id)
    assert [r.id for r in runs.list(team.workspace, status="Canceled")] == [a.id]
    assert [r.id for r in runs.list(team.workspace, compute=team.spot)] == [b.id]
    assert [r.id for r in runs.list(team.workspace, limit=1)] == [b.id]
    with pytest.raises(InvalidInput, match="Status"):
        runs.list(team.workspace, status="Done")
    with pytest.raises(NotFound):
        runs.list("missing")


def test_newest_per_workspace_caps_each_workspace_not_the_whole_list(
        runs: RunService, computes: ComputeService, workspaces: WorkspaceService, team: Team, recipe: Recipe) -> None:
    workspaces.create("other", "westeurope", "ml-rg")
    computes.create("other", "gpu-1", "auto")
    here = [runs.submit(team.workspace, "pets", team.dedicated, recipe) for _ in range(3)]
    there = [runs.submit("other", "pets", "gpu-1", recipe) for _ in range(2)]
    runs.request_cancel(here[2].id)
    newest = runs.newest_per_workspace(2)
    assert [r.id for r in newest] == [there[1].id, there[0].id, here[2].id, here[1].id]  # newest first
    assert newest[0].experiment_name == "pets"
    queued = runs.newest_per_workspace(2, {"Queued"})
    assert [r.id for r in queued] == [there[1].id, there[0].id, here[1].id, here[0].id]
    with pytest.raises(InvalidInput, match="Status"):
        runs.newest_per_workspace(2, {"Done"})


def test_submit_validates_its_input(runs: RunService, team: Team, recipe: Recipe) -> None:
    with pytest.raises(InvalidInput):
        runs.submit(team.workspace, "_pets", team.dedicated, recipe)
    with pytest.raises(InvalidInput):
        runs.submit(team.workspace, "pets", team.dedicated, {"data": object()})
    with pytest.raises(InvalidInput):
        runs.submit(team.workspace, "pets", team.dedicated, {"lr": math.nan})
    with pytest.raises(InvalidInput):
        runs.submit(team.workspace, "pets", team.dedicated, recipe, project_name="9lives")
    with pytest.raises(InvalidInput):
        runs.submit(team.workspace, "pets", team.dedicated, recipe, max_error_retries=-1)
    with pytest.raises(NotFound) as caught:
        runs.submit(team.workspace, "pets", "nope", recipe)
    assert caught.value.steps["create"] == step("create_compute", workspace=team.workspace, compute="nope")
    with pytest.raises(NotFound):
        runs.submit("missing", "pets", team.dedicated, recipe)
    assert runs.list(team.workspace) == []


def test_a_failed_compute_takes_no_runs(
    runs: RunService, computes: ComputeService, team: Team, recipe: Recipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(compute_module._PROVISIONERS, "ray", raising=False)
    failed = computes.create(team.workspace, "cluster", "auto", kind="ray", address="auto")
    assert failed.state == "Failed"
    with pytest.raises(Conflict) as caught:
        runs.submit(team.workspace, "pets", "cluster", recipe)
    assert "Failed" in caught.value.message
    assert caught.value.steps["delete"] == step("delete_compute", workspace=team.workspace, compute="cluster")


def test_idempotent_submission(runs: RunService, team: Team, recipe: Recipe, workspaces: object) -> None:
    first = runs.submit(team.workspace, "pets", team.dedicated, recipe, idempotency_key="job-42")
    again = runs.submit(team.workspace, "pets", team.dedicated, dict(recipe), idempotency_key="job-42")
    assert again == first
    assert len(runs.list(team.workspace)) == 1
    with pytest.raises(Conflict) as caught:
        runs.submit(team.workspace, "pets", team.dedicated, {**recipe, "epochs": 9}, idempotency_key="job-42")
    assert first.id in caught.value.message
    assert "new idempotency key" in caught.value.hint
    with pytest.raises(InvalidInput):
        runs.submit(team.workspace, "pets", team.dedicated, recipe, idempotency_key="has space")
    other = runs.submit(team.workspace, "pets", team.dedicated, recipe, idempotency_key="job-43")
    assert other.id != first.id


def test_the_happy_lifecycle(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> None:
    run = _running(runs, leases, team, recipe)
    assert run.started_at is not None
    assert run.ended_at is None
    runs.transition(run.id, "Finalizing", "exporting", attempt=1)
    done = runs.transition(run.id, "Completed", "best model exported", attempt=1, details={"accuracy": 0.9})
    assert done.ended_at is not None
    assert done.ended_at >= done.started_at  # type: ignore[operator]
    history = runs.history(run.id)
    assert [h.status for h in history] == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert history[-1].details == {"accuracy": 0.9}
    assert history[-1].attempt == 1
    assert all(a.at <= b.at for a, b in zip(history, history[1:], strict=False))


def test_illegal_transitions_are_refused(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> None:
    run = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    with pytest.raises(Conflict) as caught:
        runs.transition(run.id, "Running", "skip the claim")
    assert "Queued to Running" in caught.value.message
    assert "Preparing" in caught.value.hint
    with pytest.raises(Conflict):
        runs.transition(run.id, "Done", "no such status")
    with pytest.raises(Conflict, match="claims it"):
        runs.transition(run.id, "Preparing", "without a lease")
    runs.transition(run.id, "Failed", "data missing")
    with pytest.raises(Conflict) as caught:
        runs.transition(run.id, "Queued", "again")
    assert "it has ended" in caught.value.hint
    assert runs.get(run.id).error == "data missing"


def test_cancel_a_queued_run_ends_it_and_a_running_one_is_asked(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    waiting = runs.submit(team.workspace, "pets", team.spot, recipe)
    canceled = runs.request_cancel(waiting.id)
    assert canceled.status == "Canceled"
    assert canceled.ended_at is not None
    assert runs.request_cancel(waiting.id).status == "Canceled"  # again: nothing to do

    running = _running(runs, leases, team, recipe)
    asked = runs.request_cancel(running.id)
    assert asked.status == "Running"
    assert asked.cancel_requested
    assert runs.stop_request(running.id, 1) == "cancel"
    runs.transition(running.id, "Canceled", "stopped at step 7; best model kept", attempt=1)
    with pytest.raises(Conflict):
        runs.request_cancel(_finish(runs, leases, team, recipe).id)


def _finish(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> Run:
    run = _running(runs, leases, team, recipe)
    runs.transition(run.id, "Finalizing", "export", attempt=run.attempt)
    return runs.transition(run.id, "Completed", "done", attempt=run.attempt)


def test_preempt_requests_reach_the_worker(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> None:
    queued = runs.submit(team.workspace, "pets", team.spot, recipe)
    with pytest.raises(Conflict):
        runs.request_preempt(queued.id, "capacity")
    running = _running(runs, leases, team, recipe)
    assert runs.stop_request(running.id, 1) is None
    asked = runs.request_preempt(running.id, "a dedicated run needs the GPU")
    assert asked.preempt_requested
    assert asked.preempt_reason == "a dedicated run needs the GPU"
    assert runs.stop_request(running.id, 1) == "preempt"


def test_unknown_runs(runs: RunService) -> None:
    for run_id in ("run-000000000000", "../../etc", "", "RUN-ABC"):
        with pytest.raises(NotFound):
            runs.get(run_id)
