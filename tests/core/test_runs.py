from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core import compute as compute_module
from modelbuilder.core.compute import ComputeService, register_provisioner
from modelbuilder.core.entities import ArtifactRecord, Run, utcnow
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.runs import RunService
from modelbuilder.core.sizes import default_catalog
from modelbuilder.errors import Conflict, InvalidInput, NotFound, StaleAttempt

if TYPE_CHECKING:
    from tests.core.conftest import Team

Recipe = dict[str, object]


def _claim(leases: LeaseService, team: Team, owner: str = "agent-a") -> Run:
    run = leases.claim_next_run([team.dedicated_id, team.spot_id], owner, lease_seconds=60)
    assert run is not None
    return run


def _running(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> Run:
    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    run = _claim(leases, team)
    return runs.transition(run.id, "Running", "training started", attempt=run.attempt)


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
    assert "compute create nope" in caught.value.hint
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
    assert "modelbuilder compute delete cluster" in caught.value.hint


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


def test_fencing_refuses_a_stale_attempt(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> None:
    old = _running(runs, leases, team, recipe)
    leases.requeue_expired(now=utcnow() + timedelta(minutes=5))  # attempt 1's worker was lost
    stale_writes = [
        lambda: runs.transition(old.id, "Finalizing", "late", attempt=1),
        lambda: runs.log_metrics(old.id, 1, 1, {"loss": 0.5}),
        lambda: runs.append_logs(old.id, 1, ["late line"]),
        lambda: runs.update_progress(old.id, 1, {"epoch": 1}),
        lambda: runs.set_best_metrics(old.id, 1, {"accuracy": 0.5}),
        lambda: runs.set_resume_point(old.id, 1, "checkpoints/last.pt", 1, 10),
        lambda: runs.stop_request(old.id, 1),
    ]
    for write in stale_writes:  # refused while queued (the lease was taken away) ...
        with pytest.raises(StaleAttempt):
            write()
    new = _claim(leases, team, owner="agent-b")
    assert new.attempt == 2
    for write in stale_writes:  # ... and once a newer attempt holds the run
        with pytest.raises(StaleAttempt) as caught:
            write()
        assert "attempt 2" in caught.value.message
    runs.transition(new.id, "Running", "resumed", attempt=2)
    runs.log_metrics(new.id, 2, 1, {"loss": 0.4})
    assert [m.value for m in runs.metrics(new.id)] == [0.4]


def test_a_control_plane_end_fences_the_worker(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    runs.transition(run.id, "Failed", "stopped by an operator")
    with pytest.raises(StaleAttempt):
        runs.append_logs(run.id, 1, ["still here"])


def test_metrics_are_replaced_when_an_epoch_is_logged_again(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    runs.log_metrics(run.id, 1, 1, {"loss": 0.9, "accuracy": 0.5})
    runs.log_metrics(run.id, 1, 2, {"loss": 0.7, "accuracy": 0.6})
    runs.log_metrics(run.id, 1, 2, {"loss": 0.65})  # epoch 2 again, as after a resume
    runs.log_metrics(run.id, 1, 3, {"loss": math.nan, "accuracy": math.inf})
    loss = runs.metrics(run.id, key="loss")
    assert [(m.step, m.value) for m in loss[:2]] == [(1, 0.9), (2, 0.65)]
    assert math.isnan(loss[2].value)
    assert [(m.step, m.value) for m in runs.metrics(run.id, key="accuracy")] == [
        (1, 0.5),
        (2, 0.6),
        (3, math.inf),
    ]
    assert len(runs.metrics(run.id)) == 6
    with pytest.raises(InvalidInput):
        runs.log_metrics(run.id, 1, 4, {"loss": "low"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        runs.log_metrics(run.id, 1, -1, {"loss": 0.1})
    with pytest.raises(InvalidInput):
        runs.log_metrics(run.id, 1, 4, {"": 0.1})


def test_logs_are_numbered_and_followed(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> None:
    run = _running(runs, leases, team, recipe)
    assert runs.append_logs(run.id, 1, ["one", ("warning", "two"), "three"]) == 3
    assert runs.append_logs(run.id, None, ["from the control plane"]) == 4
    assert runs.append_logs(run.id, 1, [("error", "x" * 20_000)]) == 5
    lines = runs.logs(run.id)
    assert [(line.seq, line.level) for line in lines] == [
        (1, "info"),
        (2, "warning"),
        (3, "info"),
        (4, "info"),
        (5, "error"),
    ]
    assert lines[4].message.endswith("(cut)")
    assert [line.message for line in runs.logs(run.id, after_seq=2, limit=2)] == [
        "three",
        "from the control plane",
    ]
    assert runs.logs(run.id, after_seq=5) == []
    with pytest.raises(InvalidInput):
        runs.append_logs(run.id, 1, [("loud", "x")])


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


def test_progress_best_metrics_resume_point_and_artifacts(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    runs.update_progress(run.id, 1, {"phase": "training", "epoch": 2, "eta_s": 31.5})
    runs.set_best_metrics(run.id, 1, {"accuracy": 0.93})
    runs.set_resume_point(run.id, 1, "checkpoints/epoch-2.pt", 2, 40)
    with pytest.raises(InvalidInput):
        runs.set_resume_point(run.id, 1, "../elsewhere.pt", 2, 40)
    now = utcnow()
    runs.record_artifacts(run.id, [ArtifactRecord(run.id, "bestModel.onnx", 10, "a" * 64, now)], attempt=1)
    runs.record_artifacts(run.id, [ArtifactRecord(run.id, "bestModel.onnx", 12, "b" * 64, now)])  # replaced
    runs.record_artifacts(run.id, [ArtifactRecord(run.id, "MLModel.zip", 30, "c" * 64, now)])
    with pytest.raises(InvalidInput):
        runs.record_artifacts(run.id, [ArtifactRecord(run.id, "/etc/passwd", 1, "d" * 64, now)])
    got = runs.get(run.id)
    assert got.progress == {"phase": "training", "epoch": 2, "eta_s": 31.5}
    assert got.best_metrics == {"accuracy": 0.93}
    assert (got.resume_from, got.resume_epoch, got.resume_step) == ("checkpoints/epoch-2.pt", 2, 40)
    assert [(a.path, a.size) for a in runs.artifacts(run.id)] == [("MLModel.zip", 30), ("bestModel.onnx", 12)]


@pytest.fixture
def paid(computes: ComputeService, team: Team, monkeypatch: pytest.MonkeyPatch) -> tuple[str, float]:
    """A low-priority compute of a size with a list price (a Ray cluster, so this host need not fit it):
    its id, and its price per hour."""
    monkeypatch.setattr(compute_module, "_PROVISIONERS", dict(compute_module._PROVISIONERS))
    register_provisioner("ray", lambda compute, size: None)  # a cluster big enough for anything
    spot = computes.create(team.workspace, "nc12-spot", "Standard_NC12", "low-priority", kind="ray", address="auto")
    return spot.id, default_catalog().price_per_hour("Standard_NC12", "low-priority")


def test_the_reaper_charges_a_lost_attempt_up_to_its_last_renewal(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe, paid: tuple[str, float]
) -> None:
    compute_id, price = paid
    run = runs.submit(team.workspace, "pets", "nc12-spot", recipe)
    t0 = utcnow()
    leases.claim_next_run([compute_id], "agent-a", 60, now=t0)
    leases.renew_lease(run.id, 1, "agent-a", 60, now=t0 + timedelta(minutes=10))  # its last sign of life
    [reaped] = leases.requeue_expired(now=t0 + timedelta(minutes=20))
    assert reaped.status == "Queued"
    assert reaped.compute_seconds == 600
    assert reaped.cost == pytest.approx(600 / 3600 * price)


def test_the_agent_charges_an_attempt_whose_worker_died_up_to_when_it_saw_it_exit(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe, paid: tuple[str, float]
) -> None:
    compute_id, price = paid
    run = runs.submit(team.workspace, "pets", "nc12-spot", recipe)
    t0 = utcnow()
    leases.claim_next_run([compute_id], "agent-a", 60, now=t0)
    settled = leases.worker_exited(run.id, 1, "agent-a", "worker exited (SIGKILL)", now=t0 + timedelta(minutes=5))
    assert (settled.status, settled.error_retries) == ("Queued", 1)
    assert settled.compute_seconds == 300
    assert settled.cost == pytest.approx(300 / 3600 * price)
    assert [(c.attempt, c.seconds, c.by) for c in runs.charges(run.id)] == [(1, 300, "agent")]


def test_each_attempt_is_charged_once_whoever_settles_it_first(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe, paid: tuple[str, float]
) -> None:
    compute_id, price = paid
    run = runs.submit(team.workspace, "pets", "nc12-spot", recipe)
    t0 = utcnow()
    minutes = lambda m: t0 + timedelta(minutes=m)  # noqa: E731 - the test's clock
    leases.claim_next_run([compute_id], "agent-a", 60, now=t0)
    leases.renew_lease(run.id, 1, "agent-a", 60, now=minutes(30))
    leases.requeue_expired(now=minutes(35))  # attempt 1: 30 minutes, charged by the reaper
    runs.charge_attempt(run.id, 1, until=minutes(40))  # its worker wakes up, fenced: nothing more
    leases.claim_next_run([compute_id], "agent-b", 60, now=minutes(45))
    runs.transition(run.id, "Running", "training", attempt=2)
    runs.transition(run.id, "Finalizing", "exporting", attempt=2)
    runs.transition(run.id, "Completed", "done", attempt=2)
    runs.charge_attempt(run.id, 2, until=minutes(60))  # attempt 2: its worker charges 15 minutes
    after = leases.worker_exited(run.id, 2, "agent-b", "worker exited (exit code 0)", now=minutes(61))
    assert after.status == "Completed"
    assert [(c.attempt, c.seconds, c.by) for c in runs.charges(run.id)] == [(1, 1800, "reaper"), (2, 900, "worker")]
    assert after.compute_seconds == 2700
    assert after.cost == pytest.approx(0.75 * price)
    with pytest.raises(StaleAttempt):
        runs.charge_attempt(run.id, 3)


def test_time_on_this_host_has_no_list_price(runs: RunService, leases: LeaseService, team: Team,
                                              recipe: Recipe) -> None:
    local = _running(runs, leases, team, recipe)
    charged = runs.charge_attempt(local.id, 1, until=local.started_at + timedelta(hours=1))  # type: ignore[operator]
    assert charged.compute_seconds >= 3600
    assert charged.cost == 0.0  # 'auto' is this host


def test_unknown_runs(runs: RunService) -> None:
    for run_id in ("run-000000000000", "../../etc", "", "RUN-ABC"):
        with pytest.raises(NotFound):
            runs.get(run_id)
