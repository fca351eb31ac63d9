"""The `ray` backend: a compute that is an existing Ray cluster, on which runs train with Ray Train.

Provisioning (`modelbuilder compute create NAME --kind ray --address ADDR --size SIZE`) connects to
the cluster from a short subprocess, so that the calling process (a CLI, the server) never becomes a
Ray driver, and compares the cluster's resources with the size: GPUs, vCPUs and memory (with the same
10 % margin as local computes). An unreachable or too small cluster fails the compute with the
numbers and the fix.

A run on a ray compute gets a driver process on this host (`_ray_driver`), in its own session like a
local worker, with its output (and the Ray workers' output) in `logs/worker-<attempt>.log` in the run's
folder. The driver runs Ray Train's `TorchTrainer`; each Ray worker runs the same worker protocol as a
local run (`backends.worker.execute`), so statuses, metrics, logs and artifacts reach the store just
as they do for local runs.

What the cluster's nodes must share with this host, at the same paths: the store (PostgreSQL through
MODELBUILDER_DB_URL on a real cluster; the default SQLite file works only while every Ray node is
this host), the artifact root (MODELBUILDER_ARTIFACT_ROOT, or `<home>/artifacts`) and the training
data. Ray Train's own storage (`RunConfig.storage_path`) is `<artifacts>/<run id>/ray`, or
`MODELBUILDER_RAY_STORAGE/<run id>` when that names another shared folder or a URI (`s3://...`).
The head should run Ray's dashboard (`pip install 'ray[default]'`): Ray Train asks its state API
about the trainer, and logs a warning every few seconds of the run when it cannot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from modelbuilder.backends.local import SessionWorker, niced
from modelbuilder.config import get_settings
from modelbuilder.core import entities as e
from modelbuilder.core.compute import register_provisioner
from modelbuilder.core.scheduler import register_launcher
from modelbuilder.core.services import artifact_store
from modelbuilder.core.sizes import AUTO, SizeSpec
from modelbuilder.errors import CapacityError, InvalidInput
from modelbuilder.results.files import worker_log

PROBE_TIMEOUT_S = 30.0
DEFAULT_ADDRESS = "auto"  # RAY_ADDRESS, else the cluster started on this host with `ray start`
CPU_WORKERS = 2  # Ray Train workers for a size without GPUs, unless the recipe sets --processes
LOW_PRIORITY_MAX_FAILURES = 3  # worker-group restarts from the last checkpoint on a low-priority compute
STORAGE_ENV = "MODELBUILDER_RAY_STORAGE"
INSTALL_HINT = "pip install 'modelbuilder[ray]'"
_PROBE_MARK = "MODELBUILDER-RAY-PROBE "

# Run in a fresh interpreter: connects as a short-lived driver, prints the cluster's resources, exits.
_PROBE = f"""
import json, sys
try:
    import ray
    ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    print({_PROBE_MARK!r} + json.dumps({{"resources": ray.cluster_resources(), "nodes": nodes}}), flush=True)
except Exception as exc:
    print({_PROBE_MARK!r} + json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}}), flush=True)
"""


@dataclass(frozen=True)
class ClusterResources:
    """What a Ray cluster offers: totals, and per node (a worker must fit on one node)."""

    address: str
    cpus: float
    gpus: float
    memory_gib: float  # Ray's `memory` plus its object store: about the nodes' RAM
    node_cpus: tuple[float, ...] = ()
    node_gpus: tuple[float, ...] = ()

    @classmethod
    def from_ray(cls, address: str, resources: dict[str, float], nodes: list[dict[str, float]]) -> ClusterResources:
        memory = resources.get("memory", 0.0) + resources.get("object_store_memory", 0.0)
        return cls(address, float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)), memory / 2**30,
                   tuple(float(n.get("CPU", 0.0)) for n in nodes), tuple(float(n.get("GPU", 0.0)) for n in nodes))

    def describe(self) -> str:
        nodes = len(self.node_cpus)
        return (f"{self.gpus:g} GPUs, {self.cpus:g} CPUs, {self.memory_gib:.0f} GiB of memory"
                f"{f' on {nodes} node(s)' if nodes else ''}")


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        raise InvalidInput("Ray is not installed in this environment, so 'ray' computes cannot be used.",
                           f"{INSTALL_HINT}, then create the compute again.")


def _refused(address: str) -> str | None:
    """Why nothing can answer at a HOST:PORT (or ray://HOST:PORT) address, found in a moment; else None.

    Ray's own connection retries for minutes when nothing listens, so this is checked first."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None  # 'auto', or a form Ray resolves itself
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def probe_cluster(address: str, timeout_s: float | None = None) -> ClusterResources:
    """Connect to the cluster at `address` from a subprocess and read its resources."""
    require_ray()
    timeout_s = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    refused = _refused(address)
    if refused:
        raise CapacityError(
            f"No Ray cluster answers at {address} ({refused}).",
            "start one there ('ray start --head --port PORT' on the head node) or give the right address "
            "(HOST:PORT of the head, 'ray://HOST:10001', or 'auto' on a node of the cluster).")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    process = subprocess.Popen([sys.executable, "-c", _PROBE, address], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise CapacityError(
            f"No Ray cluster answered at {address} within {timeout_s:.0f} s.",
            "start one there ('ray start --head --port 6379' on the head node) or give the right address "
            "(HOST:PORT of the head, 'ray://HOST:10001', or 'auto' on a node of the cluster).") from None
    found = [line[len(_PROBE_MARK):] for line in out.splitlines() if line.startswith(_PROBE_MARK)]
    if not found:
        tail = (err.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
        raise CapacityError(f"Could not read the Ray cluster at {address}: {tail[:300]}.",
                            f"check that Ray works here ({INSTALL_HINT}) and that the cluster is up ('ray status').")
    answer = json.loads(found[-1])
    if "error" in answer:
        raise CapacityError(
            f"Could not connect to a Ray cluster at {address}: {answer['error'][:300]}.",
            "start it ('ray start --head' on the head node, 'ray start --address=HEAD:PORT' on the others) or "
            "give the right address (HOST:PORT of the head, 'ray://HOST:10001', or 'auto' on a node of it).")
    return ClusterResources.from_ray(address, answer["resources"], answer["nodes"])


def _kill_group(process: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


def cluster_shortfalls(size: SizeSpec, cluster: ClusterResources) -> list[str]:
    """What `size` needs that `cluster` lacks (memory with a 10 % margin); empty when it fits."""
    short = []
    if size.gpus > cluster.gpus:
        short.append("GPUs")
    if size.vcpus > cluster.cpus:
        short.append("vCPUs")
    if size.memory_gib > cluster.memory_gib * 1.1:
        short.append("memory")
    return short


def provision_ray(compute: e.Compute, size: SizeSpec) -> None:
    """A ray compute fits when its cluster answers and has the size's GPUs, vCPUs and memory."""
    address = compute.address or DEFAULT_ADDRESS
    cluster = probe_cluster(address)
    if size.name == AUTO:
        return  # `auto` on a Ray cluster: whatever it has
    short = cluster_shortfalls(size, cluster)
    if short:
        needs = [f"{size.gpus} GPU(s)"] if size.gpus else []
        needs += [f"{size.vcpus} vCPUs", f"{size.memory_gib:g} GiB of memory"]
        raise CapacityError(
            f"Size {size.name} needs {', '.join(needs)}; the Ray cluster at {address} has {cluster.describe()} "
            f"(too few {', '.join(short)}).",
            "pick a size the cluster can hold (see 'modelbuilder compute sizes'), or add nodes to it "
            f"('ray start --address={_head(address)}' on each) before creating the compute again.")


def _head(address: str) -> str:
    """What `ray start --address` on a new node takes: the head's HOST:PORT."""
    return address if ":" in address and not address.startswith("ray://") else "HEAD_HOST:6379"


@dataclass(frozen=True)
class WorkerPlan:
    """How a run spreads over the cluster: Ray Train's ScalingConfig and FailureConfig."""

    workers: int
    use_gpu: bool
    resources_per_worker: dict[str, float]
    max_failures: int

    def describe(self) -> str:
        each = ", ".join(f"{v:g} {k}" for k, v in self.resources_per_worker.items())
        return f"{self.workers} Ray Train worker(s) with {each} each"


def plan_workers(size: SizeSpec, processes: int | None, cluster: ClusterResources, priority: str,
                 share: int = 1) -> WorkerPlan:
    """One worker per GPU of the size; without GPUs, `processes` CPU workers (default 2), never more than
    the CPUs the size and the cluster have. Each worker gets an equal share of the size's vCPUs that
    fits on one node. Low-priority computes restart lost workers from the last checkpoint. A sweep's
    trial plans within its `share` of the size (`Run.share`: that many trials run at once)."""
    auto = size.name == AUTO
    gpus = int(cluster.gpus if auto else size.gpus) // max(1, share)
    cpus = max(1, int(cluster.cpus if auto else min(size.vcpus, cluster.cpus)) // max(1, share))
    max_failures = LOW_PRIORITY_MAX_FAILURES if priority == "low-priority" else 0
    if gpus > 0:
        per_node = [int(c // g) for c, g in zip(cluster.node_cpus, cluster.node_gpus, strict=True) if g >= 1]
        share = max(1, min([cpus // gpus, *per_node]))
        return WorkerPlan(gpus, True, {"CPU": share, "GPU": 1}, max_failures)
    workers = max(1, min(processes or CPU_WORKERS, cpus))
    share = max(1, min(cpus // workers, int(max(cluster.node_cpus, default=cpus))))
    return WorkerPlan(workers, False, {"CPU": share}, max_failures)


def storage_path(run_id: str) -> str:
    """Ray Train's storage for a run: MODELBUILDER_RAY_STORAGE/<run id>, else `<artifacts>/<run id>/ray`."""
    configured = os.environ.get(STORAGE_ENV)
    if configured:
        return configured.rstrip("/")  # RunConfig(name=run id) adds the run's own folder under it
    return str(artifact_store().run_dir(run_id) / "ray")


class RayDriver(SessionWorker):
    """The driver process of a run on a Ray cluster (the agent's handle on it); killing it ends Ray's
    trainer and workers too, as they share the driver's fate."""

    what: ClassVar[str] = "Ray driver"


class RayLauncher:
    def launch(self, run: e.Run, owner: str, size: SizeSpec, compute: e.Compute) -> RayDriver:
        require_ray()
        log_path = artifact_store().run_dir(run.id) / worker_log(run.attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "modelbuilder.backends._ray_driver", run.id, "--attempt", str(run.attempt),
                   "--owner", owner, "--address", compute.address or DEFAULT_ADDRESS, "--size", size.name,
                   "--priority", compute.priority]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        with log_path.open("ab") as out:
            driver = subprocess.Popen(niced(command, get_settings().worker_nice), stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        return RayDriver(run.id, run.attempt, driver, log_path)


register_provisioner("ray", provision_ray)
register_launcher("ray", RayLauncher)
