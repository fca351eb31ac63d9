"""`modelbuilder experiment list|show` (and the run counts of `workspace show`) over runs made directly."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from modelbuilder.core.compute import ComputeService
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService
from tests.cli.driver import Cli


@dataclass(frozen=True)
class Runs:
    completed: str
    queued: str
    canceled: str
    other: str


@pytest.fixture
def runs(store: Store) -> Runs:
    """In workspace 'team': 'pets' has a completed run (accuracy 0.9), a queued and a canceled one;
    'birds' has one queued run; 'empty-exp' has none."""
    WorkspaceService(store).create("team", "westeurope", "ml-rg")
    compute = ComputeService(store).create("team", "cpu-1", "auto")
    service, leases = RunService(store), LeaseService(store)
    first = service.submit("team", "pets", "cpu-1", {"epochs": 1})
    claimed = leases.claim_next_run([compute.id], "agent-a", 60)
    assert claimed is not None
    assert claimed.id == first.id
    service.transition(first.id, "Running", "training", attempt=claimed.attempt)
    RunRecorder(store).set_best_metrics(first.id, claimed.attempt, {"accuracy": 0.9, "macro_f1": 0.88})
    service.transition(first.id, "Finalizing", "exporting", attempt=claimed.attempt)
    service.transition(first.id, "Completed", "done", attempt=claimed.attempt)
    canceled = service.submit("team", "pets", "cpu-1", {"epochs": 2})
    service.request_cancel(canceled.id)
    queued = service.submit("team", "pets", "cpu-1", {"epochs": 3})
    other = service.submit("team", "birds", "cpu-1", {"epochs": 1})
    WorkspaceService(store).register_or_get_experiment("team", "empty-exp")
    return Runs(first.id, queued.id, canceled.id, other.id)


def test_experiment_list_counts_runs_and_shows_the_latest_status(cli: Cli, runs: Runs) -> None:
    listed = cli("experiment", "list", "--workspace", "team", "--json").json()
    assert [(x["name"], x["runs"], x["latest_status"]) for x in listed] == [
        ("birds", 1, "Queued"), ("empty-exp", 0, None), ("pets", 3, "Queued")]
    rows = cli("experiment", "list", "-w", "team").ok().rows()
    assert [row[:3] for row in rows] == [["birds", "1", "Queued"], ["empty-exp", "0", "-"], ["pets", "3", "Queued"]]


def test_experiment_show_lists_its_runs_with_accuracy_and_duration(cli: Cli, runs: Runs) -> None:
    shown = cli("experiment", "show", "pets", "--workspace", "team", "--json").json()
    assert shown["experiment"]["name"] == "pets"
    assert shown["experiment"]["workspace"] == "team"
    by_id = {run["id"]: run for run in shown["runs"]}
    assert [run["id"] for run in shown["runs"]] == [runs.queued, runs.canceled, runs.completed]  # newest first
    done = by_id[runs.completed]
    assert (done["status"], done["compute"], done["accuracy"]) == ("Completed", "cpu-1", 0.9)
    assert done["duration_s"] is not None
    assert done["duration_s"] >= 0
    assert by_id[runs.queued]["accuracy"] is None
    assert by_id[runs.queued]["duration_s"] is None
    assert by_id[runs.canceled]["status"] == "Canceled"

    rows = {row[0]: row for row in cli("experiment", "show", "pets", "-w", "team").ok().rows()}
    assert set(rows) == {runs.completed, runs.queued, runs.canceled}
    assert rows[runs.completed][1:4] == ["Completed", "cpu-1", "0.9000"]
    assert rows[runs.queued][1:4] == ["Queued", "cpu-1", "-"]
    assert rows[runs.queued][5] == "-"


def test_the_workspace_in_use_is_the_default_for_experiments(cli: Cli, runs: Runs) -> None:
    assert cli("experiment", "list", "--json").json() == []  # 'default' (made now) has none
    cli("workspace", "use", "team").ok()
    assert [x["name"] for x in cli("experiment", "list", "--json").json()] == ["birds", "empty-exp", "pets"]
    assert len(cli("experiment", "show", "birds", "--json").json()["runs"]) == 1


def test_unknown_or_invalid_experiment_names_are_one_line_errors(cli: Cli, runs: Runs) -> None:
    cli("experiment", "show", "fish", "-w", "team").user_error(
        "Experiment 'fish' does not exist in workspace 'team'", "modelbuilder experiment list")
    cli("experiment", "show", "_x", "-w", "team").user_error("Experiment name '_x' is not valid")
    cli("experiment", "list", "-w", "ghost").user_error("Workspace 'ghost' does not exist")


def test_workspace_show_counts_runs_by_status(cli: Cli, runs: Runs) -> None:
    shown = cli("workspace", "show", "team", "--json").json()
    assert shown["runs_by_status"] == {"Canceled": 1, "Completed": 1, "Queued": 2}
    assert [(x["name"], x["runs"]) for x in shown["experiments"]] == [("birds", 1), ("empty-exp", 0), ("pets", 3)]
    assert [(c["name"], c["state"], c["error"]) for c in shown["computes"]] == [("cpu-1", "Succeeded", None)]
    text = cli("workspace", "show", "team").ok().stdout
    assert "Runs: 4 (Canceled 1, Completed 1, Queued 2)" in text
