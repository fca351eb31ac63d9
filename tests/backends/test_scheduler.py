"""The scheduler with real worker processes: kills, preemption, eviction, exactly-once, retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from modelbuilder.core.scheduler import evict

pytestmark = pytest.mark.slow


def _history(plane, run_id):
    return [(h.status, h.reason) for h in plane.runs.history(run_id)]


def _final_val_accuracy(plane, run_id):
    points = plane.runs.metrics(run_id, "val_accuracy")
    return max(points, key=lambda p: p.step).value


def test_kill_9_mid_epoch_resumes_from_the_checkpoint_and_matches_an_uninterrupted_run(plane, agent):
    slow = {"architecture": "resnet18", "epochs": 6}  # epochs long enough to be killed in the middle of one
    straight = plane.submit(**slow)
    assert plane.wait_ended(straight.id).status == "Completed"

    run = plane.submit(**slow)
    plane.wait(run.id, lambda r: r.progress.get("phase") == "training" and r.progress.get("epoch", 0) >= 3,
               what="epoch 3 under way")
    os.kill(agent.workers[run.id].process.pid, signal.SIGKILL)
    at_kill = plane.runs.get(run.id).progress  # the last position the killed attempt reported
    done = plane.wait_ended(run.id)
    assert done.status == "Completed", _history(plane, run.id)
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


def test_a_dedicated_run_preempts_a_low_priority_run_which_resumes(plane, agent):
    low = plane.computes.create("default", "spot", "Standard_D2s_v3", priority="low-priority")
    ded = plane.computes.create("default", "steady", "Standard_D2s_v3", priority="dedicated")
    assert (low.state, ded.state) == ("Succeeded", "Succeeded"), (low.error, ded.error)
    background = plane.submit(compute="spot", architecture="resnet18", epochs=4)
    plane.wait_epoch(background.id, 1)
    urgent = plane.submit(compute="steady", epochs=2)
    plane.wait(background.id, lambda r: r.preemptions >= 1, what="a preemption")
    assert plane.wait_ended(urgent.id).status == "Completed"
    done = plane.wait_ended(background.id)
    assert done.status == "Completed"
    history = _history(plane, background.id)
    statuses = [s for s, _ in history]
    assert statuses[statuses.index("Preempted") + 1] == "Queued"
    preempted = next(reason for status, reason in history if status == "Preempted")
    assert urgent.id in preempted
    assert any("resumes at epoch" in reason for status, reason in history if status == "Preparing")
    assert "Preempted" not in [s for s, _ in _history(plane, urgent.id)]
    # the dedicated run started only once the low-priority one gave way
    urgent_running = next(h.at for h in plane.runs.history(urgent.id) if h.status == "Running")
    background_preempted = next(h.at for h in plane.runs.history(background.id) if h.status == "Preempted")
    assert urgent_running >= background_preempted


def test_compute_evict_interrupts_low_priority_runs_which_resume(plane, agent):
    plane.computes.create("default", "spot", "Standard_D2s_v3", priority="low-priority")
    run = plane.submit(compute="spot", architecture="resnet18", epochs=10)
    plane.wait_epoch(run.id, 1)
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    evicted = subprocess.run([sys.executable, "-m", "modelbuilder", "compute", "evict", "spot"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert evicted.returncode == 0, evicted.stderr
    assert run.id in evicted.stdout
    done = plane.wait_ended(run.id)
    assert done.status == "Completed"
    assert done.preemptions == 1
    history = _history(plane, run.id)
    assert any(status == "Preempted" and "evicted" in reason for status, reason in history)
    assert done.error_retries == 0  # a preemption does not spend the error budget


def test_dedicated_computes_cannot_be_evicted(plane):
    from modelbuilder.errors import Conflict

    with pytest.raises(Conflict, match="never interrupted"):
        evict(plane.store, "default", "local")


def test_two_agents_and_thirty_runs_execute_every_run_exactly_once(plane, tmp_path):
    plane.computes.create("default", "small", "Standard_F1s")
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home), "MODELBUILDER_CPU_SLOTS": "4"}
    agents = [subprocess.Popen([sys.executable, "-m", "modelbuilder", "agent", "--poll", "0.3"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        runs = [plane.submit(compute="small", epochs=1, seed=i) for i in range(30)]
        ended = [plane.wait_ended(run.id, timeout=900) for run in runs]
    finally:
        for process in agents:
            process.terminate()
            process.wait(30)
    assert [run.status for run in ended] == ["Completed"] * 30
    owners = set()
    for run in ended:
        history = plane.runs.history(run.id)
        assert [h.status for h in history] == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
        assert run.attempt == 1
        owners.add(history[1].details["owner"])
    assert len(owners) == 2, "both agents should have claimed runs"


def test_runs_in_flight_survive_their_agent_being_killed(plane):
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    command = [sys.executable, "-m", "modelbuilder", "agent", "--poll", "0.3"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = [plane.submit(epochs=3, seed=i) for i in range(2)]
    plane.wait(runs[0].id, lambda r: r.status == "Running", what="Running")
    first.kill()
    first.wait(10)
    time.sleep(1)
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert [plane.wait_ended(run.id).status for run in runs] == ["Completed", "Completed"]
    finally:
        second.terminate()
        second.wait(30)


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
    reasons = [reason for status, reason in _history(plane, run.id) if status == "Queued"]
    assert any("retry 1 of 2" in r for r in reasons)
    assert any("retry 2 of 2" in r for r in reasons)
