"""What a run records (core/recording.py): metrics, logs, progress, resume points, artifacts, charges,
each write fenced by the attempt that makes it, and reading them back."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core import compute as compute_module
from modelbuilder.core.compute import ComputeService, register_provisioner
from modelbuilder.core.entities import ArtifactRecord, utcnow
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.sizes import default_catalog
from modelbuilder.errors import InvalidInput, StaleAttempt
from tests.core.conftest import claim as _claim
from tests.core.conftest import running as _running

if TYPE_CHECKING:
    from tests.core.conftest import Team

Recipe = dict[str, object]


def test_fencing_refuses_a_stale_attempt(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    old = _running(runs, leases, team, recipe)
    leases.requeue_expired(now=utcnow() + timedelta(minutes=5))  # attempt 1's worker was lost
    stale_writes = [
        lambda: runs.transition(old.id, "Finalizing", "late", attempt=1),
        lambda: recorder.log_metrics(old.id, 1, 1, {"loss": 0.5}),
        lambda: recorder.append_logs(old.id, 1, ["late line"]),
        lambda: recorder.update_progress(old.id, 1, {"epoch": 1}),
        lambda: recorder.set_best_metrics(old.id, 1, {"accuracy": 0.5}),
        lambda: recorder.set_resume_point(old.id, 1, "checkpoints/last.pt", 1, 10),
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
    recorder.log_metrics(new.id, 2, 1, {"loss": 0.4})
    assert [m.value for m in recorder.metrics(new.id)] == [0.4]


def test_a_control_plane_end_fences_the_worker(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    runs.transition(run.id, "Failed", "stopped by an operator")
    with pytest.raises(StaleAttempt):
        recorder.append_logs(run.id, 1, ["still here"])


def test_metrics_are_replaced_when_an_epoch_is_logged_again(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    recorder.log_metrics(run.id, 1, 1, {"loss": 0.9, "accuracy": 0.5})
    recorder.log_metrics(run.id, 1, 2, {"loss": 0.7, "accuracy": 0.6})
    recorder.log_metrics(run.id, 1, 2, {"loss": 0.65})  # epoch 2 again, as after a resume
    recorder.log_metrics(run.id, 1, 3, {"loss": math.nan, "accuracy": math.inf})
    loss = recorder.metrics(run.id, key="loss")
    assert [(m.step, m.value) for m in loss[:2]] == [(1, 0.9), (2, 0.65)]
    assert math.isnan(loss[2].value)
    assert [(m.step, m.value) for m in recorder.metrics(run.id, key="accuracy")] == [
        (1, 0.5),
        (2, 0.6),
        (3, math.inf),
    ]
    assert len(recorder.metrics(run.id)) == 6
    with pytest.raises(InvalidInput):
        recorder.log_metrics(run.id, 1, 4, {"loss": "low"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        recorder.log_metrics(run.id, 1, -1, {"loss": 0.1})
    with pytest.raises(InvalidInput):
        recorder.log_metrics(run.id, 1, 4, {"": 0.1})


def test_metrics_after_a_step_are_the_new_epochs_only(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    for epoch in (1, 2, 3):
        recorder.log_metrics(run.id, 1, epoch, {"val_accuracy": epoch / 4, "val_loss": math.nan if epoch == 2 else 1.0})
    points = recorder.metrics(run.id)
    assert [(p.key, p.step) for p in points] == [(k, s) for k in ("val_accuracy", "val_loss") for s in (1, 2, 3)]
    assert all(p.run_id == run.id and p.at is not None for p in points)
    assert math.isnan(points[4].value)  # NULL reads back as NaN
    newer = recorder.metrics(run.id, after_step=1)
    assert [(p.key, p.step) for p in newer] == [("val_accuracy", 2), ("val_accuracy", 3), ("val_loss", 2),
                                                ("val_loss", 3)]
    assert [p.value for p in recorder.metrics(run.id, key="val_accuracy", after_step=2)] == [0.75]
    assert recorder.metrics(run.id, after_step=3) == []


def test_logs_are_numbered_and_followed(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    assert recorder.append_logs(run.id, 1, ["one", ("warning", "two"), "three"]) == 3
    assert recorder.append_logs(run.id, None, ["from the control plane"]) == 4
    assert recorder.append_logs(run.id, 1, [("error", "x" * 20_000)]) == 5
    lines = recorder.logs(run.id)
    assert [(line.seq, line.level) for line in lines] == [
        (1, "info"),
        (2, "warning"),
        (3, "info"),
        (4, "info"),
        (5, "error"),
    ]
    assert lines[4].message.endswith("(cut)")
    assert [line.message for line in recorder.logs(run.id, after_seq=2, limit=2)] == [
        "three",
        "from the control plane",
    ]
    assert recorder.logs(run.id, after_seq=5) == []
    with pytest.raises(InvalidInput):
        recorder.append_logs(run.id, 1, [("loud", "x")])


def test_progress_best_metrics_resume_point_and_artifacts(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = _running(runs, leases, team, recipe)
    recorder.update_progress(run.id, 1, {"phase": "training", "epoch": 2, "eta_s": 31.5})
    recorder.set_best_metrics(run.id, 1, {"accuracy": 0.93})
    recorder.set_resume_point(run.id, 1, "checkpoints/epoch-2.pt", 2, 40)
    with pytest.raises(InvalidInput):
        recorder.set_resume_point(run.id, 1, "../elsewhere.pt", 2, 40)
    now = utcnow()
    recorder.record_artifacts(run.id, [ArtifactRecord(run.id, "bestModel.onnx", 10, "a" * 64, now)], attempt=1)
    recorder.record_artifacts(run.id, [ArtifactRecord(run.id, "bestModel.onnx", 12, "b" * 64, now)])  # replaced
    recorder.record_artifacts(run.id, [ArtifactRecord(run.id, "MLModel.zip", 30, "c" * 64, now)])
    with pytest.raises(InvalidInput):
        recorder.record_artifacts(run.id, [ArtifactRecord(run.id, "/etc/passwd", 1, "d" * 64, now)])
    got = runs.get(run.id)
    assert got.progress == {"phase": "training", "epoch": 2, "eta_s": 31.5}
    assert got.best_metrics == {"accuracy": 0.93}
    assert (got.resume_from, got.resume_epoch, got.resume_step) == ("checkpoints/epoch-2.pt", 2, 40)
    assert [(a.path, a.size) for a in recorder.artifacts(run.id)] == [("MLModel.zip", 30), ("bestModel.onnx", 12)]
    # which run a copy of a file came from: by its path and SHA-256 (a replaced file's old bytes name no run)
    assert recorder.runs_with_artifact("MLModel.zip", "c" * 64) == [run.id]
    assert recorder.runs_with_artifact("bestModel.onnx", "a" * 64) == []
    assert recorder.runs_with_artifact("bestModel.onnx", "c" * 64) == []


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
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe,
    paid: tuple[str, float],
) -> None:
    compute_id, price = paid
    run = runs.submit(team.workspace, "pets", "nc12-spot", recipe)
    t0 = utcnow()
    leases.claim_next_run([compute_id], "agent-a", 60, now=t0)
    settled = leases.worker_exited(run.id, 1, "agent-a", "worker exited (SIGKILL)", now=t0 + timedelta(minutes=5))
    assert (settled.status, settled.error_retries) == ("Queued", 1)
    assert settled.compute_seconds == 300
    assert settled.cost == pytest.approx(300 / 3600 * price)
    assert [(c.attempt, c.seconds, c.by) for c in recorder.charges(run.id)] == [(1, 300, "agent")]


def test_each_attempt_is_charged_once_whoever_settles_it_first(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe,
    paid: tuple[str, float],
) -> None:
    compute_id, price = paid
    run = runs.submit(team.workspace, "pets", "nc12-spot", recipe)
    t0 = utcnow()
    minutes = lambda m: t0 + timedelta(minutes=m)  # noqa: E731 - the test's clock
    leases.claim_next_run([compute_id], "agent-a", 60, now=t0)
    leases.renew_lease(run.id, 1, "agent-a", 60, now=minutes(30))
    leases.requeue_expired(now=minutes(35))  # attempt 1: 30 minutes, charged by the reaper
    recorder.charge_attempt(run.id, 1, until=minutes(40))  # its worker wakes up, fenced: nothing more
    leases.claim_next_run([compute_id], "agent-b", 60, now=minutes(45))
    runs.transition(run.id, "Running", "training", attempt=2)
    runs.transition(run.id, "Finalizing", "exporting", attempt=2)
    runs.transition(run.id, "Completed", "done", attempt=2)
    recorder.charge_attempt(run.id, 2, until=minutes(60))  # attempt 2: its worker charges 15 minutes
    after = leases.worker_exited(run.id, 2, "agent-b", "worker exited (exit code 0)", now=minutes(61))
    assert after.status == "Completed"
    charges = [(c.attempt, c.seconds, c.by) for c in recorder.charges(run.id)]
    assert charges == [(1, 1800, "reaper"), (2, 900, "worker")]
    assert after.compute_seconds == 2700
    assert after.cost == pytest.approx(0.75 * price)
    with pytest.raises(StaleAttempt):
        recorder.charge_attempt(run.id, 3)


def test_a_sweep_pays_for_its_trials_each_at_its_share_of_the_compute(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe,
    paid: tuple[str, float],
) -> None:
    """Two trials at once on one compute hold half of it each and pay half its price; their parent, which
    holds no capacity (it only drives them), pays nothing for its own time."""
    compute_id, price = paid
    parent = runs.submit(team.workspace, "pets", "nc12-spot", recipe, sweep={"space": {}})
    trials = [runs.submit(team.workspace, "pets", "nc12-spot", recipe, parent_run_id=parent.id,
                          trial={"number": n, "params": {}, "share": 2}) for n in range(2)]
    t0 = utcnow()
    claimed = [leases.claim_next_run([compute_id], "agent-a", 60, now=t0) for _ in range(3)]
    assert {c.id for c in claimed if c is not None} == {parent.id, *(t.id for t in trials)}
    for run in claimed:
        recorder.charge_attempt(run.id, 1, until=t0 + timedelta(hours=1))  # type: ignore[union-attr]
    assert runs.get(parent.id).cost == 0.0
    assert runs.get(parent.id).compute_seconds == 3600  # its time is kept, at no price
    assert [runs.get(t.id).cost for t in trials] == [pytest.approx(price / 2)] * 2


def test_time_on_this_host_has_no_list_price(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    local = _running(runs, leases, team, recipe)
    charged = recorder.charge_attempt(local.id, 1, until=local.started_at + timedelta(hours=1))  # type: ignore[operator]
    assert charged.compute_seconds >= 3600
    assert charged.cost == 0.0  # 'auto' is this host

