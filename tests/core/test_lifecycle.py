"""A run's lifecycle in the control plane, driven by a real agent and real worker processes: experiments,
cancel, a worker that dies, and what each attempt is charged. (The scheduler's own drills are in
test_scheduler.py.)"""

from __future__ import annotations

import json
import os
import signal
import zipfile

import pytest

from modelbuilder.core.entities import utcnow
from modelbuilder.core.services import artifact_store
from modelbuilder.core.sizes import default_catalog

pytestmark = pytest.mark.slow


def test_two_runs_join_one_experiment(plane, agent):
    first = plane.submit(experiment="pets", epochs=1)
    second = plane.submit(experiment="pets", epochs=1, seed=1)
    assert first.experiment_id == second.experiment_id
    assert [plane.wait_ended(r.id).status for r in (first, second)] == ["Completed", "Completed"]
    assert {r.id for r in plane.runs.list("default", experiment="pets")} == {first.id, second.id}
    assert [e.name for e in plane.workspaces.list_experiments("default")] == ["pets"]


def test_cancel_keeps_and_exports_the_best_model(plane, agent):
    plane.holds.at("training 3 1")  # two epochs done
    run = plane.submit(epochs=6, early_stopping_patience=100)
    plane.wait_held(run.id)
    plane.runs.request_cancel(run.id)
    plane.holds.release(run.id)  # the worker sees the cancel at once, and stops after this step
    done = plane.wait_ended(run.id)
    assert done.status == "Canceled", plane.history(run.id)
    assert "best model so far" in done.status_reason
    run_dir = artifact_store().run_dir(run.id)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped"] == "cancel"
    assert 1 <= metrics["best_epoch"] <= 3
    assert metrics["epochs_run"] == 3  # the third was cut short by the cancel
    assert zipfile.is_zipfile(run_dir / "MLModel.zip")


def test_a_worker_that_dies_fails_the_run_with_a_reason(plane, agent):
    plane.holds.at("training 2 1")
    run = plane.runs.submit("default", "exp", "local", plane.recipe(epochs=3), project_name="Tiny",
                            max_error_retries=0)
    held = plane.wait_held(run.id)
    assert held["pid"] == agent.workers[run.id].pid
    os.kill(held["pid"], signal.SIGKILL)
    done = plane.wait_ended(run.id, timeout=60)
    assert done.status == "Failed"
    assert "SIGKILL" in done.error
    assert "no error retries left" in done.status_reason


def test_an_attempt_ended_by_kill_9_is_charged_up_to_when_its_agent_saw_it_die(plane, agent):
    plane.computes.create("default", "paid", "Standard_F1s")  # a size with a list price
    plane.holds.at("training 2 1")
    run = plane.runs.submit("default", "exp", "paid", plane.recipe(epochs=2), project_name="Tiny")
    held = plane.wait_held(run.id)
    claimed = plane.wait_status(run.id, "Preparing").at
    # Held, the attempt lasts at least 2 s before the kill, so its charge is plainly not nothing.
    plane.wait(run.id, lambda r: (utcnow() - claimed).total_seconds() >= 2, what="2 s since the claim")
    os.kill(held["pid"], signal.SIGKILL)
    plane.holds.release(run.id)
    done = plane.wait_ended(run.id)
    assert done.status == "Completed", plane.history(run.id)
    history = plane.runs.history(run.id)
    claims = {h.attempt: h.at for h in reversed(history)}  # the first change of each attempt: its claim
    killed = next(h.at for h in history if h.status == "Queued" and "SIGKILL" in h.reason)
    completed = history[-1].at
    # attempt 1 up to the moment the agent found its worker gone; attempt 2 up to its end, by its worker
    expected = (killed - claims[1]).total_seconds() + (completed - claims[2]).total_seconds()
    assert done.compute_seconds == pytest.approx(expected, abs=1.0)
    assert done.compute_seconds > (killed - claims[1]).total_seconds() >= 2
    price = default_catalog().price_per_hour("Standard_F1s", "dedicated")
    assert done.cost == pytest.approx(done.compute_seconds / 3600 * price)
    charges = plane.recorder.charges(run.id)
    assert [(c.attempt, c.by) for c in charges] == [(1, "agent"), (2, "worker")]  # once each
    assert (charges[0].at, charges[0].seconds) == (killed, pytest.approx((killed - claims[1]).total_seconds()))
    assert charges[1].at <= completed  # charged before the end was stored: an ended run shows its cost
    assert charges[1].seconds == pytest.approx((charges[1].at - claims[2]).total_seconds())
    assert done.compute_seconds == pytest.approx(charges[0].seconds + charges[1].seconds)

