from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core.runs import RunService
from modelbuilder.core.workspace import WorkspaceService
from modelbuilder.errors import AlreadyExists, Conflict, InvalidInput, NotFound, step

if TYPE_CHECKING:
    from tests.core.conftest import Team


@pytest.mark.parametrize("name", ["abc", "a" * 33, "Team-Vision-2", "123"])
def test_workspace_names_accepted(workspaces: WorkspaceService, name: str) -> None:
    assert workspaces.create(name, "local", "default").name == name


@pytest.mark.parametrize("name", ["ab", "a" * 34, "team_vision", "team vision", "", "tëam"])
def test_workspace_names_refused(workspaces: WorkspaceService, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        workspaces.create(name, "local", "default")
    assert "3 to 33" in caught.value.hint
    assert workspaces.list() == []


def test_regions_come_from_the_configured_list(workspaces: WorkspaceService) -> None:
    assert workspaces.create("one", "EastUS", "g").region == "eastus"
    assert workspaces.create("two", "local", "g").region == "local"
    with pytest.raises(InvalidInput) as caught:
        workspaces.create("three", "moon-base-1", "g")
    assert "local" in caught.value.hint


def test_a_configured_region_list_replaces_the_default(
    workspaces: WorkspaceService, monkeypatch: pytest.MonkeyPatch, store: object
) -> None:
    monkeypatch.setenv("MODELBUILDER_REGIONS", '["local", "lab-a"]')
    custom = WorkspaceService(workspaces.store)
    assert custom.create("one", "lab-a", "g").region == "lab-a"
    with pytest.raises(InvalidInput):
        custom.create("two", "eastus", "g")


@pytest.mark.parametrize("group", ["g", "a" * 90, "ml_rg.prod-(1)", "x.y"])
def test_resource_groups_accepted(workspaces: WorkspaceService, group: str) -> None:
    assert workspaces.create("one", "local", group).resource_group == group


@pytest.mark.parametrize("group", ["", "a" * 91, "ends-with-dot.", "has space", "slash/no"])
def test_resource_groups_refused(workspaces: WorkspaceService, group: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        workspaces.create("one", "local", group)
    assert "not ending in '.'" in caught.value.hint


def test_duplicate_workspace_names_are_refused(workspaces: WorkspaceService) -> None:
    workspaces.create("team-vision", "westeurope", "ml-rg")
    with pytest.raises(AlreadyExists) as caught:
        workspaces.create("team-vision", "eastus", "other")
    assert "another name" in caught.value.hint
    assert caught.value.steps["use"] == step("use_workspace", workspace="team-vision")
    assert [w.name for w in workspaces.list()] == ["team-vision"]
    assert workspaces.get("team-vision").region == "westeurope"


def test_get_list_and_delete(workspaces: WorkspaceService) -> None:
    for name in ("zeta", "alpha"):
        workspaces.create(name, "local", "g")
    assert [w.name for w in workspaces.list()] == ["alpha", "zeta"]
    assert workspaces.get("zeta").created_at.tzinfo is not None
    assert workspaces.delete("zeta") == []
    with pytest.raises(NotFound) as caught:
        workspaces.get("zeta")
    assert caught.value.steps["create"] == step("create_workspace", workspace="zeta")


def test_delete_refuses_active_runs_unless_forced(
    workspaces: WorkspaceService, runs: RunService, team: Team, recipe: dict[str, object]
) -> None:
    run = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    with pytest.raises(Conflict) as caught:
        workspaces.delete(team.workspace)
    assert run.id in caught.value.message
    assert caught.value.steps["force"] == step("delete_with_force", workspace=team.workspace)
    assert workspaces.delete(team.workspace, force=True) == [run.id]
    with pytest.raises(NotFound):
        runs.get(run.id)
    assert workspaces.list() == []


@pytest.mark.parametrize("name", ["abc", "a" * 36, "pets_v2", "1st-try", "A_b-C"])
def test_experiment_names_accepted(workspaces: WorkspaceService, team: Team, name: str) -> None:
    assert workspaces.register_or_get_experiment(team.workspace, name).name == name


@pytest.mark.parametrize("name", ["ab", "a" * 37, "_pets", "-pets", "pets v2", "pets.v2"])
def test_experiment_names_refused(workspaces: WorkspaceService, team: Team, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        workspaces.register_or_get_experiment(team.workspace, name)
    assert "3 to 36" in caught.value.hint


def test_the_first_use_registers_an_experiment_and_later_ones_join_it(workspaces: WorkspaceService, team: Team) -> None:
    first = workspaces.register_or_get_experiment(team.workspace, "pets")
    again = workspaces.register_or_get_experiment(team.workspace, "pets")
    assert first == again
    assert [x.name for x in workspaces.list_experiments(team.workspace)] == ["pets"]
    assert workspaces.get_experiment(team.workspace, "pets").id == first.id
    with pytest.raises(NotFound):
        workspaces.get_experiment(team.workspace, "birds")


def test_experiments_belong_to_one_workspace(workspaces: WorkspaceService, team: Team) -> None:
    workspaces.create("other", "local", "g")
    mine = workspaces.register_or_get_experiment(team.workspace, "pets")
    theirs = workspaces.register_or_get_experiment("other", "pets")
    assert mine.id != theirs.id
    with pytest.raises(NotFound):
        workspaces.register_or_get_experiment("missing", "pets")


def test_use_workspace_is_remembered_in_the_home(workspaces: WorkspaceService, home: Path) -> None:
    assert workspaces.current_workspace() is None
    assert workspaces.resolve() == "default"
    workspaces.create("team-vision", "local", "g")
    workspaces.use_workspace("team-vision")
    assert json.loads((home / "context.json").read_text()) == {"workspace": "team-vision"}
    assert WorkspaceService(workspaces.store).current_workspace() == "team-vision"
    assert workspaces.resolve() == "team-vision"
    assert workspaces.resolve("explicit") == "explicit"
    with pytest.raises(NotFound):
        workspaces.use_workspace("missing")
    workspaces.delete("team-vision")
    assert workspaces.current_workspace() is None


def test_a_damaged_context_file_is_ignored(workspaces: WorkspaceService, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "context.json").write_text("{not json")
    assert workspaces.current_workspace() is None


def test_ensure_default_makes_the_one_command_path(workspaces: WorkspaceService) -> None:
    workspace, compute = workspaces.ensure_default()
    assert (workspace.name, workspace.region, workspace.resource_group) == ("default", "local", "default")
    assert (compute.name, compute.size, compute.priority, compute.kind) == (
        "local",
        "auto",
        "dedicated",
        "local",
    )
    assert compute.state == "Succeeded"
    assert workspaces.ensure_default() == (workspace, compute)
