"""Sweeps end to end on tiny data: through the SDK, the CLI and the API, early termination of a trial that is
behind, cancel of the parent, and kill -9 of a trial. Trials are real runs with real workers; tests that act
while a trial trains hold it at a pause point (`tests/plane.py`) and wait on what the store says."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelbuilder import Workspace
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.results.files import MAP_FILE, MODEL_FILE, ZIP_FILE
from modelbuilder.sdk import data as sdk_data
from modelbuilder.sdk import objects, submit, sweep, wait
from modelbuilder.training.recipe import TrainConfig
from tests.cli.driver import Cli
from tests.imagery import make_image_folder
from tests.plane import TINY, Plane

# Two learning rates: one that learns the tiny images in an epoch, one that leaves the network as it started.
SPACE = {"learning_rate": "choice(0.01, 0.000000001)", "model_name": "tiny", "number_of_epochs": 3}
TINY_SWEEP = {**TINY, "lr": 0.01}  # the base recipe's lr is in the space: the first trial is the base recipe


@pytest.fixture
def data(home: Path, tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "pets", per_label=8)


@pytest.fixture
def fresh_session(home: Path) -> Any:
    objects._default = None
    yield
    if objects._default is not None:
        objects._default.close()
    objects._default = None


def results_of(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_a_tiny_sweep_through_the_sdk(data: Path, tmp_path: Path, fresh_session: Any) -> None:
    exp = Workspace.get().experiment("pets")
    run = exp.submit(data=data, search={**SPACE, "learning_rate": "choice(0.01, 0.02)"}, max_trials=2,
                     sampling="grid", early_termination="none", **{**TINY_SWEEP, "epochs": 2})
    assert run.entity.is_sweep
    run.wait(timeout=300)
    assert run.status == e.COMPLETED, run.entity.status_reason
    trials = run.trials()
    assert sorted(t.settings["learning_rate"] for t in trials) == [0.01, 0.02]  # the grid, each point once
    assert all(t.status == e.COMPLETED and t.accuracy is not None for t in trials)
    best = trials[0]
    assert best.best
    assert not any(t.best for t in trials[1:])
    assert run.entity.best_metrics["accuracy"] == max(t.accuracy for t in trials)  # type: ignore[type-var]
    placed = run.download(tmp_path / "out")
    assert {ZIP_FILE, MODEL_FILE, MAP_FILE, "Tiny.ConsoleApp", "Tiny.Model"} <= set(placed)
    children = run.services.runs.children(run.id)
    assert {c.parent_run_id for c in children} == {run.id}
    assert all(c.recipe["architecture"] == "tiny" and c.recipe["epochs"] == 3 for c in children)  # the space's 3


def test_a_tiny_sweep_through_the_cli(cli: Cli, data: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: choice(0.01, 0.02)\nmodel_name: tiny\nnumber_of_epochs: 2\n")
    out = tmp_path / "out"
    trained = cli("train", "--data", str(data), "--search", str(space), "--max-trials", "2", "--sampling", "grid",
                  "--early-termination", "none", "--weights", "none", "--image-size", "32", "--batch-size", "4",
                  "--output", str(out)).ok()
    assert "leaderboard" in trained.stdout
    assert {ZIP_FILE, MODEL_FILE, MAP_FILE, "Pets.ConsoleApp", "Pets.Model"} <= results_of(out)
    parent = next(run for run in cli("runs", "list", "--json").json() if run["sweep"] is not None)
    shown = cli("runs", "show", parent["id"]).ok()
    board = [row for row in shown.rows() if len(row) == 7]
    assert len(board) == 2
    assert board[0][0] == f"{parent['best_metrics']['best_trial']:.0f} *"  # the best trial first, marked
    assert all(row[3:] == ["2/2", row[4], "Completed", "completed"] for row in board)
    assert re.search(r"trial 0: learning_rate 0\.0[12], model_name tiny, number_of_epochs 2", shown.stdout)
    listed = cli("runs", "list").ok().rows()
    ids = [row[0] for row in listed]
    assert ids[0] == parent["id"]  # the sweep, then its trials nested under it
    assert all(cell.startswith("└ run-") for cell in ids[1:3])
    assert len(cli("runs", "show", parent["id"], "--json").json()["trials"]) == 2


def test_search_mistakes_are_one_line_errors_in_the_cli(cli: Cli, data: Path, tmp_path: Path) -> None:
    cli("train", "--data", str(data), "--max-trials", "3").user_error("max_trials", "search")
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers_to_freeze: choice(1, 2)\n")
    cli("train", "--data", str(data), "--search", str(bad)).user_error("layers_to_freeze is not supported")
    cli("train", "--data", str(data), "--search", "auto", "--sampling", "grid").user_error("Grid sampling")


def test_a_sweep_on_a_data_asset_trains_every_trial_on_it(data: Path, fresh_session: Any) -> None:
    """`train --data pets --search ...`: the parent is linked to the asset, and so is each trial, so a worker
    reads the images from its own artifact store."""
    with Services() as services:
        sdk_data.upload(services, data, "pets")
        settings = sweep.sweep_settings(SPACE, max_trials=1, sampling="random", early_termination="none")
        recipe = submit.recipe_from({**TINY_SWEEP, "data": "pets", "epochs": 1})
        parent = submit.submit(services, recipe, sweep=settings).run
        assert services.data.run_data(parent.id) == ("pets", 1)
        ended = wait.wait(services, parent.id, timeout=300)  # an agent runs in this process while it waits
        assert ended.status == e.COMPLETED, ended.status_reason
        [child] = services.runs.children(parent.id)
        assert child.status == e.COMPLETED, child.status_reason
        assert services.data.run_data(child.id) == ("pets", 1)


def test_a_tiny_sweep_through_the_api(client: TestClient, services: Services, data: Path) -> None:
    body = {"experiment": "pets", "recipe": {"data": str(data), **{k: v for k, v in TINY_SWEEP.items() if k != "name"}},
            "search": {"search": {**SPACE, "learning_rate": "choice(0.01, 0.02)", "number_of_epochs": 2},
                       "max_trials": 2, "sampling": "grid", "early_termination": "none"}}
    submitted = client.post("/api/v1/runs", json=body)
    assert submitted.status_code == 201, submitted.text
    parent = submitted.json()
    assert parent["sweep"]["max_trials"] == 2
    assert parent["sweep"]["search"] == "inline"
    ended = wait.wait(services, parent["id"], timeout=300)  # an agent runs in this process while it waits
    assert ended.status == e.COMPLETED, ended.status_reason
    trials = client.get(f"/api/v1/runs/{parent['id']}/trials").json()
    assert len(trials) == 2
    assert trials[0]["best"]
    assert trials[0]["accuracy"] is not None
    child = client.get(f"/api/v1/runs/{trials[0]['run_id']}").json()
    assert child["parent_run_id"] == parent["id"]
    assert child["trial"]["number"] == trials[0]["number"]
    refused = client.post("/api/v1/runs", json={**body, "search": {"search": {"learning_rate": "normal(1, 2)"}}})
    assert refused.status_code == 422, refused.text
    assert "'normal' is not supported" in refused.json()["message"]
    assert refused.json()["hint"]


def submit_sweep(plane: Plane, services: Services, **options: Any) -> e.Run:
    settings = sweep.sweep_settings(SPACE, sampling="random", early_termination="median", delay_evaluation=1,
                                    **options)
    recipe = TrainConfig.from_dict(plane.recipe(**TINY_SWEEP))
    return submit.submit(services, recipe, sweep=settings).run


def trial(plane: Plane, parent: str, number: int) -> e.Run:
    """The sweep's trial `number`, once it has been submitted."""
    plane.wait(parent, lambda run: any((c.trial or {}).get("number") == number for c in plane.runs.children(run.id))
               or run.terminal, what=f"trial {number}")
    return next(c for c in plane.runs.children(parent) if (c.trial or {}).get("number") == number)


def test_early_termination_stops_a_trial_that_is_clearly_behind(plane: Plane, agent: Any) -> None:
    plane.holds.at("training 2 1")  # every trial holds after the first step of its second epoch
    with Services() as services:
        parent = submit_sweep(plane, services, max_trials=2)
        leader = trial(plane, parent.id, 0)  # the base recipe (lr 0.01)
        plane.wait_held(leader.id)
        plane.holds.release(leader.id)
        behind = trial(plane, parent.id, 1)  # lr 1e-9 (the seeded sampler's draw): learns nothing
        assert behind.recipe["lr"] == 1e-9
        plane.wait_held(behind.id)  # its first epoch's accuracy is recorded; the driver reads it
        plane.wait(behind.id, lambda run: run.termination_reason is not None, what="early termination")
        plane.holds.release(behind.id)
        ended = plane.wait_ended(parent.id)
        assert ended.status == e.COMPLETED, plane.history(parent.id)
        stopped = plane.runs.get(behind.id)
        assert stopped.status == e.COMPLETED  # stopped early is a finished trial, not a failed or canceled one
        assert stopped.status_reason.startswith("early termination (median policy at epoch 1")
        assert max(p.step for p in plane.recorder.metrics(behind.id, "val_accuracy")) < 3
        assert plane.runs.get(leader.id).status_reason.endswith("completed)")
        assert "best trial 0" in ended.status_reason
        assert "1 stopped early" in ended.status_reason
        board = sweep.leaderboard(services, ended)
        assert [t.number for t in board] == [0, 1]
        assert board[1].early_terminated
        assert (board[0].stopped, board[1].stopped) == ("completed", "early termination")


def test_cancel_of_the_parent_cancels_its_trials_and_keeps_the_best(plane: Plane, agent: Any) -> None:
    plane.holds.at("training 2 1")
    with Services() as services:
        parent = submit_sweep(plane, services, max_trials=3)
        first = trial(plane, parent.id, 0)
        plane.wait_held(first.id)
        plane.runs.request_cancel(parent.id)
        plane.wait(first.id, lambda run: run.cancel_requested, what="the trial's cancel")
        plane.holds.release(first.id)
        ended = plane.wait_ended(parent.id)
        assert ended.status == e.CANCELED, plane.history(parent.id)
        assert ended.status_reason.startswith("canceled by the user; best trial 0")
        assert [c.status for c in plane.runs.children(parent.id)] == [e.CANCELED]  # no trial started after
        assert {ZIP_FILE, MODEL_FILE, MAP_FILE} <= results_of(services.artifacts.run_dir(parent.id))


def test_a_trial_killed_mid_sweep_resumes_and_the_sweep_completes(plane: Plane, agent: Any) -> None:
    plane.holds.at("training 2 1")
    with Services() as services:
        parent = submit_sweep(plane, services, max_trials=1)
        first = trial(plane, parent.id, 0)
        held = plane.wait_held(first.id)
        os.kill(held["pid"], signal.SIGKILL)
        plane.holds.release(first.id)  # the next attempt goes on at once
        ended = plane.wait_ended(parent.id)
        assert ended.status == e.COMPLETED, plane.history(parent.id)
        resumed = plane.runs.get(first.id)
        assert (resumed.status, resumed.attempt) == (e.COMPLETED, 2)
        claim = [h for h in plane.runs.history(first.id) if h.status == e.PREPARING][-1]
        assert claim.details.get("resume_epoch") == 1  # from the checkpoint of its first epoch


def test_a_driver_killed_mid_sweep_carries_on_from_the_store(plane: Plane, agent: Any) -> None:
    """The parent's worker dies (kill -9) while a trial trains: another attempt of the parent reattaches to
    that trial (the study is beside the parent's files, the trials in the store) and finishes the sweep."""
    plane.holds.at("training 2 1")
    with Services() as services:
        parent = submit_sweep(plane, services, max_trials=2)
        first = trial(plane, parent.id, 0)
        plane.wait_held(first.id)
        agent.workers[parent.id].kill()
        plane.wait(parent.id, lambda run: run.attempt >= 2, what="the parent's second attempt")
        plane.holds.release(first.id)
        second = trial(plane, parent.id, 1)
        plane.wait_held(second.id)
        plane.holds.release(second.id)
        ended = plane.wait_ended(parent.id)
        assert ended.status == e.COMPLETED, plane.history(parent.id)
        assert ended.attempt == 2
        children = plane.runs.children(parent.id)
        assert [(c.trial or {}).get("number") for c in children] == [0, 1]  # trial 0 was not submitted twice
        assert all(c.status == e.COMPLETED for c in children)


@pytest.fixture
def two_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's pool as two CPU slots (before the agent starts: it reads the pool once)."""
    if len(os.sched_getaffinity(0)) < 2:  # the cores this process may use (`auto` is sized by them), not the host's
        pytest.skip("two trials side by side need two usable cores")
    monkeypatch.setenv("MODELBUILDER_CPU_SLOTS", "2")


def test_concurrent_trials_share_the_compute(two_slots: None, plane: Plane, agent: Any) -> None:
    """With --max-concurrent-trials 2 each trial holds half the compute (one CPU slot here), so both train at
    once: both are held at their pause point at the same time."""
    plane.holds.at("training 2 1")
    with Services() as services:
        parent = submit_sweep(plane, services, max_trials=2, max_concurrent_trials=2)
        first, second = trial(plane, parent.id, 0), trial(plane, parent.id, 1)
        plane.wait_held(first.id)
        plane.wait_held(second.id)  # while the first is still held: side by side
        plane.holds.release(first.id, second.id)
        ended = plane.wait_ended(parent.id)
        assert ended.status == e.COMPLETED, plane.history(parent.id)
        assert [c.share for c in plane.runs.children(parent.id)] == [2, 2]
