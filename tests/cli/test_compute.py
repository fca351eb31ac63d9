"""`modelbuilder compute ...` through the real command, the failed-compute story end to end first."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuilder.core.runs import RunService
from modelbuilder.core.sizes import host_capacity
from modelbuilder.core.store import Store
from tests.cli.driver import Cli

pytestmark = pytest.mark.usefixtures("gpu_less_host")


def test_a_failed_compute_stays_blocks_its_name_until_deleted_then_the_name_is_free(
    cli: Cli, run_module: Cli
) -> None:
    assert [c["name"] for c in cli("compute", "list", "--json").json()] == ["local"]  # the default workspace
    # On a host without GPUs, Standard_NC24 (4 GPUs) cannot be met: the compute ends Failed, exit code 1.
    failed = cli("compute", "create", "big", "--size", "Standard_NC24")
    assert failed.code == 1, failed
    assert len(failed.error_lines) == 1, failed.stderr
    line = failed.error_lines[0]
    assert "Compute 'big' is Failed: Size Standard_NC24 needs 4 GPU(s) (this host has 0)" in line
    assert "modelbuilder compute delete big" in line

    # It stays, shown Failed with its error.
    listed = {c["name"]: c for c in cli("compute", "list", "--json").json()}
    assert listed["big"]["state"] == "Failed"
    assert "needs 4 GPU(s) (this host has 0)" in listed["big"]["error"]
    row = next(row for row in cli("compute", "list").ok().rows() if row[0] == "big")
    assert row[1:5] == ["Standard_NC24", "dedicated", "local", "Failed"]
    assert "needs 4 GPU(s)" in row[5]
    shown = cli("compute", "show", "big", "--json").json()
    assert (shown["state"], shown["error"]) == (listed["big"]["state"], listed["big"]["error"])

    # Creating it again under the same name, even with a size that fits, is refused naming both fixes;
    # checked in a real subprocess, as a user would see it.
    refused = run_module("compute", "create", "big", "--size", "Standard_D2s_v3")
    line = refused.user_error("Compute 'big' already exists", "in state Failed", "needs 4 GPU(s)")
    assert "use another name" in line
    assert "delete the existing compute first ('modelbuilder compute delete big')" in line
    assert refused.stdout == ""
    assert cli("compute", "show", "big", "--json").json()["size"] == "Standard_NC24"  # untouched

    # Another name works at once; deleting the failed one frees its name.
    assert "Compute big2 Succeeded" in cli("compute", "create", "big2", "--size", "Standard_D2s_v3").ok().stdout
    assert "Deleted compute big" in cli("compute", "delete", "big").ok().stdout
    assert "big" not in {c["name"] for c in cli("compute", "list", "--json").json()}
    created = cli("compute", "create", "big", "--size", "Standard_D2s_v3")
    assert "Compute big Succeeded: Standard_D2s_v3, dedicated, local, in workspace default" in created.ok().stdout
    assert cli("compute", "show", "big", "--json").json()["state"] == "Succeeded"


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("a", False), ("ab", True), ("a" * 16, True), ("a" * 17, False), ("gpu_1", False), ("GPU-1", True)],
    ids=["1-char", "2-chars", "16-chars", "17-chars", "underscore", "mixed"],
)
def test_compute_names_at_their_boundaries(cli: Cli, name: str, accepted: bool) -> None:
    result = cli("compute", "create", name, "--size", "auto")
    if accepted:
        assert f"Compute {name} Succeeded" in result.ok().stdout
    else:
        result.user_error(f"Compute name '{name}' is not valid", "2 to 16 characters")
        assert name not in {c["name"] for c in cli("compute", "list", "--json").json()}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--size", "Standard_XL"], ["Size 'Standard_XL' is not in the catalog", "Standard_NC12"]),
        (["--size", "auto", "--priority", "spot"], ["Priority 'spot' is not valid", "low-priority"]),
        (["--size", "auto", "--kind", "k8s"], ["Compute kind 'k8s' is not valid", "'ray'"]),
        (["--size", "auto", "--address", "ray://head:10001"], ["A local compute takes no address", "kind ray"]),
    ],
    ids=["size", "priority", "kind", "address"],
)
def test_bad_options_are_one_line_errors(cli: Cli, args: list[str], fragments: list[str]) -> None:
    cli("compute", "create", "gpu-1", *args).user_error(*fragments)


def test_priority_kind_and_workspace_options(cli: Cli) -> None:
    cli("workspace", "create", "team", "--region", "eastus", "--resource-group", "rg").ok()
    cli("compute", "create", "spot-1", "--size", "standard_d2s_v3", "--priority", "low-priority",
        "--workspace", "team").ok()
    spot = cli("compute", "show", "spot-1", "-w", "team", "--json").json()
    assert (spot["size"], spot["priority"], spot["kind"], spot["workspace"]) == (
        "Standard_D2s_v3", "low-priority", "local", "team")
    assert [c["name"] for c in cli("compute", "list", "--workspace", "team", "--json").json()] == ["spot-1"]
    cli("compute", "show", "spot-1").user_error("Compute 'spot-1' does not exist in workspace 'default'")
    cli("compute", "list", "--workspace", "nope").user_error("Workspace 'nope' does not exist")
    cli("compute", "list", "--workspace", "a_b").user_error("Workspace name 'a_b' is not valid")

    cli("workspace", "use", "team").ok()
    assert [c["name"] for c in cli("compute", "list", "--json").json()] == ["spot-1"]
    assert "spot-1" in cli("workspace", "show", "--json").stdout


def test_a_ray_compute_whose_cluster_cannot_be_used_fails_with_the_reason(cli: Cli) -> None:
    result = cli("compute", "create", "ray-1", "--size", "auto", "--kind", "ray", "--address", "ray://[::1]:1")
    assert result.code == 1, result
    shown = cli("compute", "show", "ray-1", "--json").json()
    assert (shown["kind"], shown["address"], shown["state"]) == ("ray", "ray://[::1]:1", "Failed")
    assert shown["error"]
    assert "ray://[::1]:1" in cli("compute", "show", "ray-1").ok().stdout  # shown as text, not read as markup


def test_delete_refuses_a_compute_with_runs_that_have_not_ended_unless_forced(cli: Cli, store: Store) -> None:
    cli("compute", "create", "cpu-1", "--size", "auto").ok()
    run = RunService(store).submit("default", "pets", "cpu-1", {"epochs": 1})
    cli("compute", "delete", "cpu-1").user_error("1 run(s) that have not ended", run.id, "--force")
    deleted = cli("compute", "delete", "cpu-1", "--force").ok()
    assert f"canceled 1 run(s): {run.id}" in deleted.stdout
    assert RunService(store).get(run.id).status == "Canceled"
    cli("compute", "delete", "cpu-1").user_error("Compute 'cpu-1' does not exist")


def test_list_on_a_fresh_home_shows_the_default_workspace_being_made(cli: Cli) -> None:
    result = cli("compute", "list")
    assert "Made workspace 'default' with the local compute 'local'" in result.ok().stderr
    assert result.rows() == [["local", "auto", "dedicated", "local", "Succeeded", ""]]


NC12 = {"vcpus": 12, "memory_gib": 112, "temp_storage_gib": 680, "gpus": 2, "gpu_memory_gib": 24,
        "max_data_disks": 48, "max_nics": 2}
NC24 = {"vcpus": 24, "memory_gib": 224, "temp_storage_gib": 1440, "gpus": 4, "gpu_memory_gib": 48,
        "max_data_disks": 64, "max_nics": 4}


def test_sizes_lists_the_catalog_with_the_design_figures(cli: Cli) -> None:
    sizes = {s["name"]: s for s in cli("compute", "sizes", "--json").json()}
    for name, figures in (("Standard_NC12", NC12), ("Standard_NC24", NC24)):
        assert {key: sizes[name][key] for key in figures} == figures
        assert 0 < sizes[name]["price_per_hour_low_priority"] < sizes[name]["price_per_hour_dedicated"]
    assert any(s["gpus"] == 0 for s in sizes.values() if s["name"] != "auto")  # CPU sizes too
    assert list(sizes)[-1] == "auto"

    rows = {row[0]: row for row in cli("compute", "sizes").ok().rows()}
    columns = ["vcpus", "memory_gib", "temp_storage_gib", "gpus", "gpu_memory_gib", "max_data_disks", "max_nics"]
    assert rows["Standard_NC12"][1:8] == [str(NC12[c]) for c in columns]
    assert rows["Standard_NC24"][1:8] == [str(NC24[c]) for c in columns]
    assert rows["Standard_NC12"][8:] == ["1.8000", "0.3600"]


def test_sizes_shows_this_host_as_auto_and_needs_no_store(cli: Cli, home: Path) -> None:
    auto = cli("compute", "sizes", "--json").json()[-1]
    host = host_capacity()
    assert (auto["vcpus"], auto["memory_gib"], auto["gpus"]) == (host.vcpus, host.memory_gib, 0)
    assert auto["price_per_hour_dedicated"] == auto["price_per_hour_low_priority"] == 0
    assert not (home / "modelbuilder.db").exists()
