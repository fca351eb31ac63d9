"""The SDK's objects (sdk/objects.py): the same application layer as the CLI, as objects, with a real run."""

from __future__ import annotations

import pytest

from modelbuilder import Workspace
from modelbuilder.errors import AlreadyExists, Conflict, InvalidInput, step
from modelbuilder.sdk import objects
from tests.imagery import make_image_folder


@pytest.fixture
def data(home, tmp_path):
    return make_image_folder(tmp_path / "pets", per_label=8)


@pytest.fixture(autouse=True)
def fresh_session(home):
    """The SDK's objects share one Services per process: each test gets its own, over its own home."""
    objects._default = None
    yield
    if objects._default is not None:
        objects._default.close()
    objects._default = None


def test_workspace_and_compute_rules_through_the_sdk(home):
    ws = Workspace.create("team-vision", region="eastus", resource_group="ml")
    assert Workspace.get("team-vision").name == "team-vision"
    with pytest.raises(AlreadyExists):
        Workspace.create("team-vision", region="eastus", resource_group="ml")
    with pytest.raises(InvalidInput):
        Workspace.create("team_vision", region="eastus", resource_group="ml")
    failed = ws.computes.create("big", size="Standard_NC24")
    assert failed.state == "Failed"
    assert "GPU" in failed.error
    with pytest.raises(AlreadyExists, match="delete the existing compute first") as refused:
        ws.computes.create("big", size="Standard_D2s_v3")
    # The SDK says the fix in concepts; the step it names is there for a program to act on.
    assert refused.value.steps["delete"] == step("delete_compute", workspace="team-vision", compute="big")
    assert "modelbuilder" not in str(refused.value)
    ws.computes.delete("big")
    assert ws.computes.create("big", size="Standard_D2s_v3").state == "Succeeded"
    with pytest.raises(InvalidInput):
        ws.experiment("x")


@pytest.mark.slow
def test_submit_wait_metrics_download(data, tmp_path):
    ws = Workspace.get()  # the default workspace, created on first use
    exp = ws.experiment("pets")
    run = exp.submit(data=data, compute="local", architecture="tiny", weights="none", image_size=32, epochs=2,
                     batch_size=4, idempotency_key="first")
    assert exp.submit(data=data, compute="local", architecture="tiny", weights="none", image_size=32, epochs=2,
                      batch_size=4, idempotency_key="first").id == run.id
    with pytest.raises(Conflict):
        exp.submit(data=data, compute="local", architecture="tiny", epochs=3, idempotency_key="first")
    events = []
    run.wait(timeout=300, on_event=events.append)  # an agent runs in this process while it waits
    assert run.status == "Completed"
    kinds = [event.kind for event in events]
    assert kinds[-1] == "end"
    assert {"status", "metrics", "log"} <= set(kinds)
    assert [e.epoch for e in events if e.kind == "metrics"] == [1, 2]
    assert [e.kind for e in run.events()][-1] == "end"  # following an ended run: its story, then its end
    assert [epoch for epoch, _ in run.metrics()["val_accuracy"]] == [1, 2]
    assert run.compute_seconds > 0
    assert run.cost == 0.0  # the 'auto' size is this host, already paid for
    assert run.result_metrics()["accuracy"] >= 0.0
    placed = run.download(tmp_path / "out")
    assert (tmp_path / "out" / "Pets.ConsoleApp" / "main.py").is_file()
    assert set(placed) >= {"MLModel.zip", "Pets.Model"}
    assert [r.id for r in exp.runs()] == [run.id]
