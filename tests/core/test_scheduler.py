"""The scheduler with real worker processes: kills, preemption, eviction, exactly-once, retries.

Where a test must act while a run is in a given phase, the run's worker holds there (a pause point,
`plane.holds`) until the test releases it, so what the test sees does not depend on the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from modelbuilder.core.scheduler import evict, run_size
from modelbuilder.core.sizes import default_catalog

pytestmark = pytest.mark.slow


def _final_val_accuracy(plane, run_id):
    points = plane.recorder.metrics(run_id, "val_accuracy")
    return max(points, key=lambda p: p.step).value


def test_kill_9_mid_epoch_resumes_from_the_checkpoint_and_matches_an_uninterrupted_run(plane, agent):
    slow = {"architecture": "resnet18", "epochs": 6}  # epochs long enough to be killed in the middle of one
    straight = plane.submit(**slow)
    assert plane.wait_ended(straight.id).status == "Completed"

    plane.holds.at("training 3 2")  # in the middle of the third epoch, after two checkpoints
    run = plane.submit(**slow)
    held = plane.wait_held(run.id)
    assert held["pid"] == agent.workers[run.id].pid
    os.kill(held["pid"], signal.SIGKILL)
    at_kill = plane.runs.get(run.id).progress  # the last position the killed attempt reported
    assert (at_kill["phase"], at_kill["epoch"], at_kill["step"]) == ("training", 3, 2)
    plane.holds.release(run.id)  # the next attempt goes through
    done = plane.wait_ended(run.id)
    assert done.status == "Completed", plane.history(run.id)
    history = plane.runs.history(run.id)
    assert [h.status for h in history].count("Running") == 2
    requeued = next(h.reason for h in history if h.status == "Queued" and "retry 1 of 2" in h.reason)
    assert "SIGKILL" in requeued
    claim = [h for h in history if h.status == "Preparing"][1]
    resumed_after = claim.details["resume_epoch"]  # epochs completed in the checkpoint it resumed from
    assert "resumes after epoch" in claim.reason
    # At most the epoch under way is lost: the checkpoint is the end of the epoch before it, or later.
    assert resumed_after >= at_kill["epoch"] - 1
    lost_steps = max(0, (at_kill["epoch"] - 1 - resumed_after) * at_kill["steps"] + at_kill["step"])
    print(f"\nkill -9 reported at epoch {at_kill['epoch']} step {at_kill['step']}/{at_kill['steps']}; resumed "
          f"after epoch {resumed_after}: lost {lost_steps} steps (at most one epoch)")
    assert abs(_final_val_accuracy(plane, run.id) - _final_val_accuracy(plane, straight.id)) <= 0.02
    assert done.best_metrics["accuracy"] == pytest.approx(plane.runs.get(straight.id).best_metrics["accuracy"],
                                                          abs=0.02)


def test_a_dedicated_run_preempts_a_low_priority_run_which_resumes(plane, start_agents, monkeypatch):
    monkeypatch.setenv("MODELBUILDER_CPU_SLOTS", "1")  # room for one run at a time, on any host
    start_agents()
    low = plane.computes.create("default", "spot", "Standard_F1s", priority="low-priority")
    ded = plane.computes.create("default", "steady", "Standard_F1s", priority="dedicated")
    assert (low.state, ded.state) == ("Succeeded", "Succeeded"), (low.error, ded.error)
    plane.holds.at("training 2 1")  # after the first epoch's checkpoint
    background = plane.submit(compute="spot", architecture="resnet18", epochs=4)
    plane.wait_held(background.id)
    urgent = plane.submit(compute="steady", epochs=2)
    plane.holds.release(urgent.id)
    # The held run cannot give way yet, so the request stays until it is released.
    plane.wait(background.id, lambda r: r.preempt_requested, what="a preemption request")
    plane.holds.release(background.id)
    plane.wait(background.id, lambda r: r.preemptions >= 1, what="a preemption")
    assert plane.wait_ended(urgent.id).status == "Completed"
    done = plane.wait_ended(background.id)
    assert done.status == "Completed"
    history = plane.history(background.id)
    statuses = [s for s, _ in history]
    assert statuses[statuses.index("Preempted") + 1] == "Queued"
    preempted = next(reason for status, reason in history if status == "Preempted")
    assert urgent.id in preempted
    assert any("resumes at epoch 2, step 1" in reason for status, reason in history if status == "Preparing")
    assert "Preempted" not in [s for s, _ in plane.history(urgent.id)]
    # the dedicated run started only once the low-priority one gave way
    urgent_running = next(h.at for h in plane.runs.history(urgent.id) if h.status == "Running")
    background_preempted = next(h.at for h in plane.runs.history(background.id) if h.status == "Preempted")
    assert urgent_running >= background_preempted


def test_compute_evict_interrupts_low_priority_runs_which_resume(plane, agent):
    plane.computes.create("default", "spot", "Standard_F1s", priority="low-priority")  # fits any host
    plane.holds.at("training 2 1")
    run = plane.submit(compute="spot", architecture="resnet18", epochs=4)
    plane.wait_held(run.id)
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    evicted = subprocess.run([sys.executable, "-m", "modelbuilder", "compute", "evict", "spot"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert evicted.returncode == 0, evicted.stderr
    assert run.id in evicted.stdout
    plane.holds.release(run.id)
    done = plane.wait_ended(run.id)
    assert done.status == "Completed"
    assert done.preemptions == 1
    history = plane.history(run.id)
    assert any(status == "Preempted" and "evicted" in reason for status, reason in history)
    assert done.error_retries == 0  # a preemption does not spend the error budget


def test_dedicated_computes_cannot_be_evicted(plane):
    from modelbuilder.errors import Conflict

    with pytest.raises(Conflict, match="never interrupted"):
        evict(plane.store, "default", "local")


def test_two_agents_and_thirty_runs_execute_every_run_exactly_once(plane, agent_process, monkeypatch):
    plane.computes.create("default", "small", "Standard_F1s")
    monkeypatch.setenv("MODELBUILDER_CPU_SLOTS", "4")
    runs = [plane.submit(compute="small", epochs=1, seed=i) for i in range(30)]
    for _ in range(2):
        agent_process()
    ended = [plane.wait_ended(run.id, timeout=900) for run in runs]
    assert [run.status for run in ended] == ["Completed"] * 30
    owners = set()
    for run in ended:
        history = plane.runs.history(run.id)
        assert [h.status for h in history] == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
        assert run.attempt == 1
        owners.add(history[1].details["owner"])
    assert len(owners) == 2, "both agents should have claimed runs"


def test_runs_in_flight_survive_their_agent_being_killed(plane, agent_process, monkeypatch):
    monkeypatch.setenv("MODELBUILDER_CPU_SLOTS", "2")  # room for both, on any host
    plane.computes.create("default", "small", "Standard_F1s")
    plane.holds.at("training 2 1")  # both runs are in training when their agent dies
    runs = [plane.submit(compute="small", epochs=3, seed=i) for i in range(2)]
    first = agent_process()
    for run in runs:
        plane.wait_held(run.id)
    first.kill()
    first.wait(10)
    plane.holds.release(*(run.id for run in runs))
    agent_process()  # a new agent finds them still held by their workers, alive, and leaves them be
    ended = [plane.wait_ended(run.id) for run in runs]
    assert [run.status for run in ended] == ["Completed", "Completed"], [plane.history(r.id) for r in runs]
    for run in ended:
        assert run.attempt == 1  # the same workers finished them: nothing was retried
        assert [h.status for h in plane.runs.history(run.id)] == ["Queued", "Preparing", "Running", "Finalizing",
                                                                  "Completed"]


def test_a_run_that_always_crashes_fails_after_its_retry_budget(plane, agent, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the decoded cache cannot live under a file")
    monkeypatch.setenv("MODELBUILDER_CACHE_DIR", str(blocker))  # workers inherit the environment
    run = plane.submit(epochs=1)
    done = plane.wait_ended(run.id)
    assert done.status == "Failed"
    assert done.attempt == 3
    assert done.error_retries == 2
    assert "FileExistsError" in done.error or "NotADirectoryError" in done.error
    reasons = [reason for status, reason in plane.history(run.id) if status == "Queued"]
    assert any("retry 1 of 2" in r for r in reasons)
    assert any("retry 2 of 2" in r for r in reasons)


def test_a_trial_holds_its_share_of_its_compute_s_size(plane):
    """Three trials at once on a 4-GPU size: a GPU each (whole GPUs), a third of the vCPUs and memory."""
    size = default_catalog().get("Standard_NC24")
    run = plane.runs.get(plane.submit().id)
    assert run_size(size, run) == size  # a run holds all of it
    third = run_size(size, replace(run, trial={"number": 0, "params": {}, "share": 3}))
    assert (third.gpus, third.vcpus) == (size.gpus // 3, size.vcpus // 3)
    assert third.memory_gib == pytest.approx(size.memory_gib / 3)
