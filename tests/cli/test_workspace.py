"""`modelbuilder workspace ...` through the real command: rules at their boundaries, list/show/use/delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from tests.cli.driver import Cli, Result


def create(cli: Cli, name: str, region: str = "westeurope", group: str = "ml-rg") -> Result:
    return cli("workspace", "create", name, "--region", region, "--resource-group", group)


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("ab", False), ("abc", True), ("a" * 33, True), ("a" * 34, False), ("team_vision", False),
     ("Team-Vision-2", True)],
    ids=["2-chars", "3-chars", "33-chars", "34-chars", "underscore", "mixed"],
)
def test_workspace_names_at_their_boundaries(cli: Cli, name: str, accepted: bool) -> None:
    result = create(cli, name)
    if accepted:
        assert f"Created workspace {name}" in result.ok().stdout
        assert name in [w["name"] for w in cli("workspace", "list", "--json").json()]
    else:
        result.user_error(f"Workspace name '{name}' is not valid", "3 to 33 characters")
        assert cli("workspace", "list", "--json").json() == []


def test_a_region_outside_the_configured_list_is_refused_with_where_to_find_them(cli: Cli) -> None:
    create(cli, "team", region="mars").user_error("Region 'mars'", "modelbuilder workspace regions")
    create(cli, "team", region="EastUS").ok()
    assert cli("workspace", "list", "--json").json()[0]["region"] == "eastus"


def test_regions_lists_the_configured_regions_and_the_setting_replaces_them(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    regions = cli("workspace", "regions").ok().stdout.split()
    assert regions[0] == "local"
    assert {"eastus", "westeurope"} <= set(regions)
    monkeypatch.setenv("MODELBUILDER_REGIONS", '["local", "moonbase"]')
    assert cli("workspace", "regions").ok().stdout.split() == ["local", "moonbase"]
    create(cli, "lunar", region="moonbase").ok()


@pytest.mark.parametrize(
    ("group", "accepted"),
    [("", False), ("g", True), ("g" * 90, True), ("g" * 91, False), ("rg.", False), ("my_rg-(1).x", True),
     ("rg/1", False)],
    ids=["empty", "1-char", "90-chars", "91-chars", "ends-with-dot", "all-allowed", "slash"],
)
def test_resource_groups_at_their_boundaries(cli: Cli, group: str, accepted: bool) -> None:
    result = create(cli, "team", group=group)
    if accepted:
        result.ok()
        assert cli("workspace", "list", "--json").json()[0]["resource_group"] == group
    else:
        result.user_error("Resource group", "1 to 90 characters")


def test_a_duplicate_workspace_name_is_refused(cli: Cli) -> None:
    create(cli, "team").ok()
    create(cli, "team", region="eastus").user_error(
        "Workspace 'team' already exists", "modelbuilder workspace use team")
    assert len(cli("workspace", "list", "--json").json()) == 1


def test_list_use_show_and_delete(cli: Cli) -> None:
    assert "No workspaces yet" in cli("workspace", "list").ok().stdout
    create(cli, "alpha").ok()
    create(cli, "beta", region="eastus", group="other").ok()
    listed = cli("workspace", "list", "--json").json()
    assert [(w["name"], w["region"], w["resource_group"], w["in_use"]) for w in listed] == [
        ("alpha", "westeurope", "ml-rg", False), ("beta", "eastus", "other", False)]

    assert "Using workspace beta" in cli("workspace", "use", "beta").ok().stdout
    assert [w["in_use"] for w in cli("workspace", "list", "--json").json()] == [False, True]
    assert [row[:2] for row in cli("workspace", "list").ok().rows()] == [["", "alpha"], ["*", "beta"]]

    shown = cli("workspace", "show", "--json").json()  # no name: the one in use
    assert shown["workspace"]["name"] == "beta"
    assert shown == {"workspace": shown["workspace"], "computes": [], "experiments": [], "runs_by_status": {}}
    assert "beta  region eastus, resource group other" in cli("workspace", "show").ok().stdout
    assert cli("workspace", "show", "alpha", "--json").json()["workspace"]["region"] == "westeurope"

    assert "Deleted workspace beta" in cli("workspace", "delete", "beta").ok().stdout
    assert [w["name"] for w in cli("workspace", "list", "--json").json()] == ["alpha"]
    cli("workspace", "use", "beta").user_error("Workspace 'beta' does not exist", "modelbuilder workspace create")
    cli("workspace", "delete", "beta").user_error("Workspace 'beta' does not exist")
    cli("workspace", "show", "beta").user_error("Workspace 'beta' does not exist")


def test_without_a_workspace_in_use_commands_act_in_default_which_is_made_on_first_use(cli: Cli) -> None:
    result = cli("workspace", "show", "--json")
    shown = result.json()
    assert shown["workspace"]["name"] == "default"
    assert [(c["name"], c["size"], c["state"]) for c in shown["computes"]] == [("local", "auto", "Succeeded")]
    assert "Made workspace 'default'" in result.stderr
    again = cli("workspace", "show", "--json")
    assert again.json()["workspace"]["id"] == shown["workspace"]["id"]
    assert again.stderr == ""


def test_use_of_a_workspace_that_is_deleted_falls_back_to_default(cli: Cli) -> None:
    create(cli, "team").ok()
    cli("workspace", "use", "team").ok()
    cli("workspace", "delete", "team").ok()
    assert cli("workspace", "show", "--json").json()["workspace"]["name"] == "default"


def test_delete_refuses_runs_that_have_not_ended_and_force_cancels_them_and_drops_their_artifacts(
    cli: Cli, store: Store, home: Path
) -> None:
    create(cli, "team").ok()
    ComputeService(store).create("team", "cpu-1", "auto")
    run = RunService(store).submit("team", "pets", "cpu-1", {"epochs": 1})
    artifacts = ArtifactStore(home / "artifacts")
    artifacts.write_bytes(run.id, "bestModelMap.json", b'["cat", "dog"]')
    assert artifacts.run_dir(run.id).is_dir()

    cli("workspace", "delete", "team").user_error("1 run(s) that have not ended", run.id, "--force")
    assert artifacts.run_dir(run.id).is_dir()
    assert "and its 1 run(s)" in cli("workspace", "delete", "team", "--force").ok().stdout
    assert not artifacts.run_dir(run.id).exists()
    assert cli("workspace", "list", "--json").json() == []


def test_home_option_picks_the_store(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    cli("--home", str(other), "workspace", "create", "team", "--region", "local", "--resource-group", "g").ok()
    assert (other / "modelbuilder.db").is_file()
    assert [w["name"] for w in cli("--home", str(other), "workspace", "list", "--json").json()] == ["team"]
