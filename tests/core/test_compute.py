from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core import compute as compute_module
from modelbuilder.core import sizes as sizes_module
from modelbuilder.core.compute import ComputeService, register_provisioner
from modelbuilder.core.entities import Compute
from modelbuilder.core.runs import RunService
from modelbuilder.core.sizes import HostCapacity, SizeCatalog, SizeSpec, host_capacity, shortfalls
from modelbuilder.core.workspace import WorkspaceService
from modelbuilder.errors import AlreadyExists, CapacityError, Conflict, InvalidInput, NotFound, step

if TYPE_CHECKING:
    from tests.core.conftest import Team


def _too_big_for_this_host() -> str:
    """The smallest catalog size this host cannot meet (every CI host misses NC24's 4 GPUs + 224 GiB)."""
    host = host_capacity()
    for size in sorted(SizeCatalog().sizes()[:-1], key=lambda s: (s.gpus, s.memory_gib)):
        if shortfalls(size, host):
            return size.name
    pytest.skip("this host meets every size in the catalog")


def _fits_this_host() -> str:
    host = host_capacity()
    fitting = [s for s in SizeCatalog().sizes()[:-1] if not shortfalls(s, host)]
    return fitting[0].name if fitting else "auto"


@pytest.fixture
def ws(workspaces: WorkspaceService) -> str:
    return workspaces.create("team-vision", "local", "ml-rg").name


@pytest.mark.parametrize("name", ["ab", "a" * 16, "gpu-1", "A1"])
def test_compute_names_accepted(computes: ComputeService, ws: str, name: str) -> None:
    assert computes.create(ws, name, "auto").name == name


@pytest.mark.parametrize("name", ["a", "a" * 17, "gpu_1", "gpu 1", ""])
def test_compute_names_refused(computes: ComputeService, ws: str, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        computes.create(ws, name, "auto")
    assert "2 to 16" in caught.value.hint
    assert computes.list(ws) == []


def test_unknown_sizes_priorities_and_kinds_are_refused(computes: ComputeService, ws: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        computes.create(ws, "gpu-1", "Standard_XL9000")
    assert "Standard_NC12" in caught.value.hint
    assert "auto" in caught.value.hint
    with pytest.raises(InvalidInput, match="Priority"):
        computes.create(ws, "gpu-1", "auto", priority="spot")
    with pytest.raises(InvalidInput, match="kind"):
        computes.create(ws, "gpu-1", "auto", kind="kubernetes")
    with pytest.raises(InvalidInput, match="address"):
        computes.create(ws, "gpu-1", "auto", kind="local", address="ray://head:10001")
    with pytest.raises(NotFound):
        computes.create("missing", "gpu-1", "auto")


def test_sizes_are_matched_case_insensitively(computes: ComputeService, ws: str) -> None:
    assert computes.create(ws, "cpu", "AUTO").size == "auto"


def test_a_fitting_local_compute_succeeds(computes: ComputeService, ws: str) -> None:
    created = computes.create(ws, "cpu", _fits_this_host(), priority="low-priority")
    assert (created.state, created.error, created.kind, created.priority) == (
        "Succeeded",
        None,
        "local",
        "low-priority",
    )
    assert computes.get(ws, "cpu") == created
    assert [c.name for c in computes.list(ws)] == ["cpu"]


def test_the_list_across_workspaces_is_by_workspace_then_name(
        computes: ComputeService, workspaces: WorkspaceService, ws: str) -> None:
    workspaces.create("another", "local", "ml-rg")
    for workspace, name in ((ws, "gpu-2"), ("another", "cpu"), (ws, "cpu")):
        computes.create(workspace, name, "auto")
    assert [(workspace, c.name) for workspace, c in computes.list_all()] == [
        ("another", "cpu"), ("team-vision", "cpu"), ("team-vision", "gpu-2")]


def test_the_failed_compute_story(computes: ComputeService, ws: str) -> None:
    too_big = _too_big_for_this_host()
    failed = computes.create(ws, "gpu-1", too_big)
    assert failed.state == "Failed"
    assert failed.error
    assert too_big in failed.error
    assert "this host has" in failed.error
    # It stays, in state Failed, with its error.
    assert computes.get(ws, "gpu-1") == failed

    # Creating it again under the same name is refused, naming both fixes.
    with pytest.raises(AlreadyExists) as caught:
        computes.create(ws, "gpu-1", "auto")
    assert "Failed" in caught.value.message
    assert "this host has" in caught.value.message
    assert "another name" in caught.value.hint
    assert caught.value.steps["delete"] == step("delete_compute", workspace=ws, compute="gpu-1")

    # Deleting the failed compute works; then the name can be used with a size that fits.
    assert computes.delete(ws, "gpu-1") == []
    with pytest.raises(NotFound):
        computes.get(ws, "gpu-1")
    again = computes.create(ws, "gpu-1", _fits_this_host())
    assert again.state == "Succeeded"
    assert again.id != failed.id


def test_an_existing_succeeded_compute_is_not_created_twice(computes: ComputeService, ws: str) -> None:
    computes.create(ws, "cpu", "auto")
    with pytest.raises(AlreadyExists) as caught:
        computes.create(ws, "cpu", "auto", priority="low-priority")
    assert "Succeeded" in caught.value.message
    assert caught.value.steps["delete"] == step("delete_compute", workspace=ws, compute="cpu")


def test_a_kind_without_provisioner_fails_the_compute_instead_of_raising(
    computes: ComputeService, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(compute_module._PROVISIONERS, "ray", raising=False)
    monkeypatch.setitem(sys.modules, "modelbuilder.backends.ray", None)  # as if Ray were not installed
    monkeypatch.setattr(compute_module, "_IMPORTED", set())
    failed = computes.create(ws, "cluster", "auto", kind="ray", address="ray://head:10001")
    assert failed.state == "Failed"
    assert failed.address == "ray://head:10001"
    assert failed.error
    assert "No provisioner" in failed.error
    assert "modelbuilder[ray]" in failed.error


def test_registered_provisioners_decide(computes: ComputeService, ws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute_module, "_PROVISIONERS", dict(compute_module._PROVISIONERS))
    seen: list[tuple[Compute, SizeSpec]] = []

    def small_cluster(compute: Compute, size: SizeSpec) -> None:
        seen.append((compute, size))
        if size.gpus > 1:
            raise CapacityError(f"The Ray cluster has 1 GPU; {size.name} needs {size.gpus}.", "add GPU nodes.")

    def unreachable(compute: Compute, size: SizeSpec) -> None:
        raise ConnectionError("connection refused")

    register_provisioner("ray", small_cluster)
    ok = computes.create(ws, "ray-small", "Standard_NC6", kind="ray", address="auto")
    assert ok.state == "Succeeded"
    assert seen[0][0].state == "Creating"
    assert seen[0][1].gpus == 1
    big = computes.create(ws, "ray-big", "Standard_NC24", kind="ray", address="auto")
    assert big.state == "Failed"
    assert big.error
    assert "needs 4" in big.error
    assert "add GPU nodes" in big.error
    register_provisioner("ray", unreachable)
    down = computes.create(ws, "ray-down", "auto", kind="ray", address="ray://nowhere:1")
    assert down.state == "Failed"
    assert down.error
    assert "ConnectionError: connection refused" in down.error


def test_delete_refuses_active_runs_unless_forced(
    computes: ComputeService, runs: RunService, team: Team, recipe: dict[str, object]
) -> None:
    queued = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    done = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    runs.transition(done.id, "Canceled", "not needed")
    with pytest.raises(Conflict) as caught:
        computes.delete(team.workspace, team.dedicated)
    assert queued.id in caught.value.message
    assert done.id not in caught.value.message
    assert "delete it with force" in caught.value.hint
    assert caught.value.steps["force"] == step("delete_with_force", workspace=team.workspace, compute=team.dedicated)
    assert caught.value.steps["cancel"] == step("cancel_run", run=queued.id)
    assert computes.delete(team.workspace, team.dedicated, force=True) == [queued.id]
    canceled = runs.get(queued.id)
    assert canceled.status == "Canceled"
    assert "deleted" in canceled.status_reason
    assert canceled.compute_id is None
    assert canceled.compute_name == team.dedicated


def test_the_catalog_has_the_reference_figures() -> None:
    catalog = SizeCatalog()
    nc12, nc24 = catalog.get("Standard_NC12"), catalog.get("Standard_NC24")
    assert (
        nc12.vcpus,
        nc12.memory_gib,
        nc12.temp_storage_gib,
        nc12.gpus,
        nc12.gpu_memory_gib,
        nc12.max_data_disks,
        nc12.max_nics,
    ) == (12, 112, 680, 2, 24, 48, 2)
    assert (
        nc24.vcpus,
        nc24.memory_gib,
        nc24.temp_storage_gib,
        nc24.gpus,
        nc24.gpu_memory_gib,
        nc24.max_data_disks,
        nc24.max_nics,
    ) == (24, 224, 1440, 4, 48, 64, 4)
    cpu_only = [s.name for s in catalog.sizes() if s.gpus == 0 and s.name != "auto"]
    assert {"Standard_D2s_v3", "Standard_D4s_v3", "Standard_D8s_v3", "Standard_F2s_v2"} <= set(cpu_only)
    auto = catalog.sizes()[-1]
    assert auto.name == "auto"
    assert auto.vcpus == host_capacity().vcpus
    assert auto.gpus == host_capacity().gpus


def test_prices_and_the_low_priority_discount(computes: ComputeService) -> None:
    assert computes.price_per_hour("Standard_NC12", "dedicated") == pytest.approx(1.80)
    assert computes.price_per_hour("Standard_NC12", "low-priority") == pytest.approx(1.80 * 0.2)
    assert computes.price_per_hour("auto", "dedicated") == 0.0
    with pytest.raises(InvalidInput):
        computes.price_per_hour("Standard_NC12", "spot")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_prices_can_be_configured_from_a_file(tmp_path: Path, suffix: str) -> None:
    data = {"prices": {"Standard_NC12": 2.5}, "low_priority_discount": 0.5}
    path = tmp_path / f"prices{suffix}"
    path.write_text(json.dumps(data))  # JSON is valid YAML too
    catalog = SizeCatalog(prices_file=path)
    assert catalog.price_per_hour("Standard_NC12", "low-priority") == pytest.approx(1.25)
    assert catalog.price_per_hour("Standard_NC24", "dedicated") == pytest.approx(3.60)
    path.write_text(json.dumps({"prices": {"Standard_Nope": 1}}))
    with pytest.raises(InvalidInput, match="Standard_Nope"):
        SizeCatalog(prices_file=path)
    path.write_text(json.dumps({"low_priority_discount": 1.5}))
    with pytest.raises(InvalidInput, match="low_priority_discount"):
        SizeCatalog(prices_file=path)


def test_shortfalls_name_every_missing_resource() -> None:
    host = HostCapacity(vcpus=8, memory_gib=30.5, gpus=1, gpu_memory_gib=16.0)
    catalog = SizeCatalog()
    assert shortfalls(catalog.get("Standard_D8s_v3"), host) == []  # 32 GiB sold, 30.5 seen: within 10 %
    assert shortfalls(catalog.get("Standard_NC4as_T4_v3"), host) == []
    missing = shortfalls(catalog.get("Standard_NC12"), host)
    assert missing == [
        "2 GPU(s) (this host has 1)",
        "12 vCPUs (this host has 8)",
        "112 GiB of memory (this host has 30)",
    ]
    assert shortfalls(catalog.get("Standard_NC24ads_A100_v4"), host)[0].startswith("80 GiB of GPU memory")


def test_cuda_visible_devices_narrows_the_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus: list[tuple[str, float | None]] = [("A", 80.0), ("B", 80.0), ("C", 40.0)]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert sizes_module._visible(gpus) == gpus
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert sizes_module._visible(gpus) == [("C", 40.0), ("A", 80.0)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sizes_module._visible(gpus) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    assert len(sizes_module._visible(gpus)) == 2


def test_host_capacity_reads_this_host_without_importing_torch() -> None:
    host = host_capacity()
    assert host.vcpus >= 1
    assert host.memory_gib > 0
    assert host.gpus >= 0
    probe = (
        "import sys; from modelbuilder.core import compute, runs, leases, workspace;"
        "compute.host_capacity(); print(sorted({'torch', 'torchvision'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
