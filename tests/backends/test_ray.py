"""Ray computes against a real Ray head on 127.0.0.1: provisioning, Ray Train runs, a lost worker.

The head is started once for the module in a session of its own (`ray start` with its own temp dir and
ports), and only that session's processes are stopped at the end: `ray stop` would stop every Ray
process of this user on the host, other clusters included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbuilder.backends.ray import ClusterResources, plan_workers
from modelbuilder.config import get_settings
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.sizes import default_catalog
from modelbuilder.errors import step
from modelbuilder.results.bundle import copy_results

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install 'modelbuilder[ray]'"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _session_members(sid: int) -> list[int]:
    """The processes of session `sid`: Ray's daemons and its workers all stay in the session of `ray start`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def _stop_session(sid: int, patience_s: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_members(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + patience_s
        while _session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _session_members(sid):
            return


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray head with 2 CPUs on 127.0.0.1 for this module; its address."""
    temp = tempfile.mkdtemp(prefix="mbray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    port = _free_port()
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--num-cpus", "2", "--num-gpus", "0",
               "--node-ip-address", "127.0.0.1", "--port", str(port),
               f"--dashboard-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
               "--dashboard-host=127.0.0.1", "--disable-usage-stats", "--temp-dir", temp,
               f"--object-store-memory={200 * 2**20}"]
    started = time.monotonic()
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        out, _ = head.communicate(timeout=180)
        if head.returncode != 0:
            pytest.fail(f"ray start failed:\n{out[-3000:]}")
        print(f"\nRay head at 127.0.0.1:{port} started in {time.monotonic() - started:.1f} s")
        yield f"127.0.0.1:{port}"
    finally:
        _stop_session(head.pid)
        subprocess.run(["rm", "-rf", temp], check=False)


def _history(plane, run_id):
    return [(h.status, h.reason) for h in plane.runs.history(run_id)]


def _rank(plane, run_id: str, rank: int) -> dict:
    path = ArtifactStore(get_settings().artifacts).run_dir(run_id) / "logs" / "ray-ranks" / f"{rank}.json"
    return json.loads(path.read_text())


def test_a_ray_compute_trains_with_two_workers_and_its_results_download(plane, agent, ray_address, tmp_path):
    compute = plane.computes.create("default", "cluster", "Standard_D2s_v3", kind="ray", address=ray_address)
    assert compute.state == "Succeeded", compute.error
    run = plane.submit(compute="cluster", processes=2, epochs=3)
    plane.wait(run.id, lambda r: r.status != "Queued", what="a claim")
    driver = agent.workers[run.id]
    done = plane.wait_ended(run.id, timeout=300)
    assert done.status == "Completed", (done.error, _history(plane, run.id))
    assert [h.status for h in plane.runs.history(run.id)] == ["Queued", "Preparing", "Running", "Finalizing",
                                                              "Completed"]
    assert done.attempt == 1
    # two Ray Train workers, one report: metrics once per epoch, one "Training" line from rank 0
    assert [_rank(plane, run.id, rank)["world"] for rank in (0, 1)] == [2, 2]
    assert sorted(p.step for p in plane.recorder.metrics(run.id, "val_accuracy")) == [1, 2, 3]
    training = [line.message for line in plane.recorder.logs(run.id) if line.message.startswith("Training ")]
    assert len(training) == 1, training
    assert "x 2 processes" in training[0]
    deadline = time.monotonic() + 60
    while driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert driver.poll() == 0, driver.describe_exit()  # the driver ends with the run, cleanly

    placed = copy_results(ArtifactStore(get_settings().artifacts).run_dir(run.id), "Tiny", tmp_path / "out")
    for item in ("Tiny.ConsoleApp", "Tiny.Model", "MLModel.zip", "bestModel.onnx", "bestModelMap.json"):
        assert placed[item].exists(), item
    assert json.loads((tmp_path / "out" / "bestModelMap.json").read_text()) == ["cat", "dog"]


def test_a_killed_ray_worker_on_a_low_priority_compute_resumes_from_its_checkpoint(plane, agent, ray_address):
    compute = plane.computes.create("default", "spot", "Standard_F2s_v2", priority="low-priority", kind="ray",
                                    address=ray_address)
    assert compute.state == "Succeeded", compute.error
    # Rank 0 holds in the second epoch, after the first checkpoint, while rank 1 is killed; then both
    # would go on, but rank 0's next step needs the dead rank, and Ray Train restarts the group.
    plane.holds.at("training 2 1")
    run = plane.submit(compute="spot", processes=2, epochs=4, early_stopping_patience=100)
    plane.wait_held(run.id, timeout=300)
    victim = _rank(plane, run.id, 1)
    checkpointed = plane.runs.get(run.id).resume_epoch
    assert checkpointed == 1
    os.kill(victim["pid"], signal.SIGKILL)
    plane.holds.release(run.id)
    done = plane.wait_ended(run.id, timeout=300)
    assert done.status == "Completed", (done.error, _history(plane, run.id))
    # Ray Train restarted the worker group inside the same attempt; the run's status never went back
    assert done.attempt == 1
    assert done.error_retries == 0
    assert [h.status for h in plane.runs.history(run.id)] == ["Queued", "Preparing", "Running", "Finalizing",
                                                              "Completed"]
    assert _rank(plane, run.id, 1)["pid"] != victim["pid"]
    resumed = [line.message for line in plane.recorder.logs(run.id)
               if "after Ray restarted the workers" in line.message]
    assert len(resumed) == 1, resumed
    # from the checkpoint there was when the worker was killed: only the epoch under way is lost
    epoch = int(resumed[0].split("resumed at epoch ")[1].split()[0])
    assert epoch == checkpointed + 1, (resumed, checkpointed)
    print(f"\nrank 1 killed after epoch {checkpointed} was checkpointed; {resumed[0]}")
    assert sorted(p.step for p in plane.recorder.metrics(run.id, "val_accuracy")) == [1, 2, 3, 4]


def test_a_ray_compute_larger_than_the_cluster_or_unreachable_fails_with_the_reason(plane, ray_address):
    big = plane.computes.create("default", "big", "Standard_NC24", kind="ray", address=ray_address)
    assert big.state == "Failed"
    assert "needs 4 GPU(s), 24 vCPUs" in big.error
    assert f"the Ray cluster at {ray_address} has 0 GPUs, 2 CPUs" in big.error
    cpus = plane.computes.create("default", "wide", "Standard_D8s_v3", kind="ray", address=ray_address)
    assert cpus.state == "Failed"
    assert "needs 8 vCPUs" in cpus.error
    assert "too few vCPUs" in cpus.error

    nowhere = f"127.0.0.1:{_free_port()}"
    gone = plane.computes.create("default", "gone", "Standard_F2s_v2", kind="ray", address=nowhere)
    assert gone.state == "Failed"
    assert f"No Ray cluster answers at {nowhere}" in gone.error
    assert "ray start --head" in gone.error
    from modelbuilder.errors import AlreadyExists

    with pytest.raises(AlreadyExists) as again:
        plane.computes.create("default", "gone", "Standard_F2s_v2", kind="ray", address=ray_address)
    assert "state Failed (No Ray cluster answers" in str(again.value)
    assert "use another name" in again.value.hint
    assert again.value.steps["delete"] == step("delete_compute", workspace="default", compute="gone")


def test_worker_plans_follow_the_size_the_recipe_and_the_cluster():
    sizes = default_catalog()
    two_cpus = ClusterResources("head:6379", 2, 0, 18, (2.0,), (0.0,))
    plan = plan_workers(sizes.get("Standard_D2s_v3"), 2, two_cpus, "low-priority")
    assert (plan.workers, plan.use_gpu, plan.resources_per_worker, plan.max_failures) == (2, False, {"CPU": 1}, 3)
    assert plan_workers(sizes.get("Standard_D2s_v3"), None, two_cpus, "dedicated").max_failures == 0
    assert plan_workers(sizes.get("Standard_D2s_v3"), 8, two_cpus, "dedicated").workers == 2  # at most the CPUs
    big = ClusterResources("head:6379", 32, 4, 256, (16.0, 16.0), (2.0, 2.0))
    gpu = plan_workers(sizes.get("Standard_NC24"), None, big, "dedicated")  # one worker per GPU, on two nodes
    assert (gpu.workers, gpu.use_gpu, gpu.resources_per_worker) == (4, True, {"CPU": 6, "GPU": 1})
    cpu = plan_workers(sizes.get("Standard_D8s_v3"), None, big, "dedicated")
    assert (cpu.workers, cpu.resources_per_worker) == (2, {"CPU": 4})
    everything = plan_workers(sizes.get("auto"), None, big, "dedicated")  # auto: the whole cluster
    assert (everything.workers, everything.resources_per_worker) == (4, {"CPU": 8, "GPU": 1})
    half = plan_workers(sizes.get("auto"), None, big, "dedicated", share=2)  # one of two trials at once
    assert (half.workers, half.resources_per_worker) == (2, {"CPU": 8, "GPU": 1})
    quarter = plan_workers(sizes.get("Standard_D8s_v3"), None, big, "dedicated", share=4)  # 8 vCPUs / 4 trials
    assert (quarter.workers, quarter.resources_per_worker) == (2, {"CPU": 1})
