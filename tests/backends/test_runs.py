"""Runs end to end through the control plane: real agent, real worker processes, real training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile

import pytest

from modelbuilder.config import get_settings
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.entities import utcnow
from modelbuilder.core.sizes import default_catalog

pytestmark = pytest.mark.slow


def _statuses(plane, run_id):
    return [h.status for h in plane.runs.history(run_id)]


def test_a_run_goes_through_every_status_and_records_everything(plane, agent):
    run = plane.submit(epochs=2)
    done = plane.wait_ended(run.id)
    assert done.status == "Completed", done.error
    assert _statuses(plane, run.id) == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert all(h.reason for h in plane.runs.history(run.id))
    epochs = sorted({m.step for m in plane.recorder.metrics(run.id, "val_accuracy")})
    assert epochs == [1, 2]
    assert done.best_metrics["accuracy"] >= 0.0
    assert done.compute_seconds > 0
    messages = [line.message for line in plane.recorder.logs(run.id)]
    assert any("Training tiny" in m for m in messages)
    recorded = {a.path: a for a in plane.recorder.artifacts(run.id)}
    for path in ("bestModel.onnx", "bestModelMap.json", "MLModel.zip", "metrics.json", "data_report.json",
                 "recipe.json", "Tiny.ConsoleApp/main.py", "checkpoints/last.pt"):
        assert path in recorded, path
    # what is recorded is what is on disk
    on_disk = {a.path: a for a in ArtifactStore(get_settings().artifacts).list(run.id)}
    for path, record in recorded.items():
        assert (on_disk[path].size, on_disk[path].sha256) == (record.size, record.sha256), path


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
    run_dir = ArtifactStore(get_settings().artifacts).run_dir(run.id)
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


def test_a_user_mistake_fails_at_once_without_retries(plane, agent, tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    (tmp_path / "one" / "only" / "x.png").write_bytes(b"not really")
    run = plane.runs.submit("default", "exp", "local", plane.recipe(data=str(tmp_path / "one")),
                            project_name="Tiny")
    done = plane.wait_ended(run.id, timeout=60)
    assert done.status == "Failed"
    assert done.attempt == 1
    assert "No images" in done.error or "one label" in done.error


def test_train_cli_end_to_end_with_default_workspace(plane, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    result = subprocess.run(
        [sys.executable, "-m", "modelbuilder", "train", "--data", str(plane.data), "--architecture", "tiny",
         "--weights", "none", "--epochs", "2", "--batch-size", "4", "--name", "Pets", "--output", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done" in result.stdout
    for name in ("Pets.ConsoleApp/main.py", "Pets.Model/pyproject.toml", "MLModel.zip", "bestModel.onnx",
                 "bestModelMap.json"):
        assert (out / name).exists(), name
    listed = subprocess.run([sys.executable, "-m", "modelbuilder", "runs", "list", "--json"], capture_output=True,
                            text=True, env=env, timeout=60)
    runs = json.loads(listed.stdout)
    assert [r["status"] for r in runs] == ["Completed"]
    again = tmp_path / "again"
    download = subprocess.run([sys.executable, "-m", "modelbuilder", "runs", "download", runs[0]["id"], "--output",
                               str(again)], capture_output=True, text=True, env=env, timeout=60)
    assert download.returncode == 0, download.stderr
    assert (again / "Pets.Model").is_dir()
    app = subprocess.run([sys.executable, str(again / "Pets.ConsoleApp" / "main.py")], capture_output=True,
                         text=True, timeout=60)
    assert app.returncode == 0, app.stderr
    assert "Predicted label:" in app.stdout


def test_train_cli_mistakes_are_one_line_with_exit_code_2(plane, tmp_path):
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    for args, needle in ((["--data", str(tmp_path / "missing")], "does not exist"),
                         (["--data", str(plane.data), "--epochs", "0"], "--epochs"),
                         (["--data", str(plane.data), "--time-budget", "soon"], "Duration"),
                         (["--data", str(plane.data), "--compute", "nope"], "nope")):
        result = subprocess.run([sys.executable, "-m", "modelbuilder", "train", *args], capture_output=True,
                                text=True, env=env, timeout=60)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_train_prints_the_portal_link_when_a_server_runs(plane, tmp_path):
    import httpx

    from tests.liveserver import Server

    server = Server(plane.home).start()
    try:
        env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
        result = subprocess.run(
            [sys.executable, "-m", "modelbuilder", "train", "--data", str(plane.data), "--architecture", "tiny",
             "--weights", "none", "--epochs", "1", "--detach"], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        line = next(line for line in result.stdout.splitlines() if line.startswith("Monitor current run: "))
        url = line.removeprefix("Monitor current run: ")
        assert url.startswith(f"{server.url}/workspaces/default/runs/run-")
        assert httpx.get(url, timeout=30).status_code == 200
        run_id = url.rsplit("/", 1)[1]
        assert plane.wait_ended(run_id).status == "Completed"  # the server's agent ran it
        from modelbuilder.sdk import Workspace

        assert Workspace.get("default").run(run_id).portal_url == url
    finally:
        server.stop()
