"""The driver of one run on a Ray cluster, and the function each Ray Train worker runs.

    python -m modelbuilder.backends._ray_driver RUN_ID --attempt N --owner OWNER --address ADDR \
        --size SIZE --priority PRIORITY

The `ray` launcher starts it in a session of its own. It connects to the cluster, plans the workers
(`backends.ray.plan_workers`) and runs `TorchTrainer(train_worker)`. It renews the run's lease while
Ray Train runs, so that the run stays held while Ray replaces lost workers (rank 0, which renews the
lease too, may be one of them).

Each Ray worker runs `train_worker`: the worker protocol of a local run (`backends.worker.execute`)
in the process group Ray Train set up. Rank 0 reports to the store and settles the run's end
(Completed, Canceled, Failed for a mistake in the data or the recipe, back to the queue after a
preemption); the other ranks train their share. An unexpected error on any rank (a bug, or a peer
lost with its node) is raised to Ray Train with the run still held: on a low-priority compute Ray
restarts the worker group (`FailureConfig.max_failures`), and the new rank 0 resumes from the run's
last checkpoint (`resume_from` in the store: `checkpoints/last.pt`, on storage the nodes share) and
logs "resumed at epoch N after Ray restarted the workers". When Ray Train gives up, the driver hands
the error to `LeaseService.fail_or_retry`, the run's own error budget.

Exit codes: 0 when the run ended or went back to the queue (whatever rank 0 reported), 1 when Ray
Train failed for good (the driver settled the run), EXIT_FENCED when this attempt does not hold it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from typing import Any

import ray
import ray.train
import torch.distributed as dist
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from modelbuilder.backends.ray import ClusterResources, plan_workers, storage_path
from modelbuilder.backends.worker import EXIT_FENCED, EXIT_PREEMPTED, execute
from modelbuilder.config import get_settings
from modelbuilder.core import entities as e
from modelbuilder.core.leases import LeaseRenewal, LeaseService
from modelbuilder.core.runs import RunService
from modelbuilder.core.services import Services, artifact_store
from modelbuilder.core.sizes import default_catalog
from modelbuilder.errors import ModelBuilderError, StaleAttempt
from modelbuilder.results.files import LOGS

CONNECT_TIMEOUT_S = 60.0
LEASE_GRACE_S = 60.0  # once the run is no longer this attempt's, how long Ray Train may take to stop
CANCEL_GRACE_S = 60.0  # a cancel still Preparing after this long: no rank 0 is there to carry it out
_RAISED = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b")
# For every process of the run's Ray job. OMP_WAIT_POLICY is read when torch loads, before the train
# function runs: OpenMP threads that spin while they wait slow training down many times over on
# shared CPUs (see backends/local.py). Ray Train's print patch would log each line of ours twice.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def holds(run: e.Run, attempt: int, owner: str) -> bool:
    """Whether `attempt` of `owner` still holds `run` (it has not ended, nor been taken over)."""
    return run.attempt == attempt and run.lease_owner == owner and run.status in e.HELD


# --- on each Ray worker -------------------------------------------------------------------------------
def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the worker protocol of a local run, on the rank Ray Train gave it."""
    os.environ.update(config["env"])  # the driver's MODELBUILDER_* settings: the same store and artifacts
    context = ray.train.get_context()
    rank = context.get_world_rank()
    os.environ["RANK"] = str(rank)  # what `execute` reads to tell rank 0 from the others
    run_id, attempt, owner = config["run_id"], config["attempt"], config["owner"]
    restarted = _record_start(run_id, attempt, rank, context.get_world_size())
    with Services() as services:
        runs = services.runs
        run = runs.get(run_id)
        if not holds(run, attempt, owner):
            print(f"[rank {rank}] run {run_id} is no longer held by attempt {attempt}; nothing to do", flush=True)
            return
        if rank == 0:
            if restarted:
                message = f"{_resume_point(run)} after Ray restarted the workers"
                print(f"[warning] {message}", flush=True)
                services.recorder.append_logs(run_id, attempt, [("warning", message)])
            code = execute(run_id, attempt, owner, restartable=True)
            if code not in (0, EXIT_PREEMPTED):
                _release_peers()
            return
        try:
            execute(run_id, attempt, owner)
        except ModelBuilderError:
            return  # a mistake in the data or the recipe: rank 0 meets it too and reports it
        except Exception:
            if holds(runs.get(run_id), attempt, owner):
                raise  # a real failure: Ray Train restarts the worker group (or gives up)
            print(f"[rank {rank}] rank 0 ended the run; this rank stops", flush=True)


def _record_start(run_id: str, attempt: int, rank: int, world: int) -> bool:
    """Note this rank's process in `logs/ray-ranks/<rank>.json`; True when the rank already ran in
    this attempt (Ray Train restarted the worker group)."""
    path = artifact_store().run_dir(run_id) / LOGS / "ray-ranks" / f"{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        restarted = json.loads(path.read_text()).get("attempt") == attempt
    except (OSError, ValueError):
        restarted = False
    record = {"rank": rank, "world": world, "attempt": attempt, "pid": os.getpid(), "host": socket.gethostname(),
              "started": time.time()}
    tmp = path.with_name(f".tmp-{rank}.json")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return restarted


def _resume_point(run: e.Run) -> str:
    if not run.resume_from:
        return "started over (no checkpoint yet)"
    if run.resume_step:
        return f"resumed at epoch {(run.resume_epoch or 0) + 1}, step {run.resume_step}"
    return f"resumed at epoch {(run.resume_epoch or 0) + 1}"


def _release_peers() -> None:
    """Rank 0 stopped before the others (it was fenced off, or failed the run): closing the process
    group makes ranks that wait in a collective fail now rather than at its timeout."""
    if dist.is_initialized():
        dist.destroy_process_group()


# --- the driver ----------------------------------------------------------------------------------------
class LeaseKeeper:
    """Renews the run's lease from the driver while Ray Train runs, restarts included.

    Once the lease is gone (rank 0 ended the run, or the run was taken over), Ray Train's workers stop
    by themselves; if they have not within LEASE_GRACE_S, the driver exits and Ray ends them with it.
    A cancel is rank 0's to carry out; one still Preparing CANCEL_GRACE_S later means no rank 0 is
    running (Ray Train waits for resources, or keeps restarting), so the driver cancels the run itself.
    """

    def __init__(self, runs: RunService, leases: LeaseService, run_id: str, attempt: int, owner: str) -> None:
        self.runs, self.leases, self.run_id, self.attempt, self.owner = runs, leases, run_id, attempt, owner
        self._done = threading.Event()
        self._cancel_seen: float | None = None
        self._lease = LeaseRenewal(leases, run_id, attempt, owner, on_renewed=self._renewed, on_lost=self._lost)

    def start(self) -> None:
        self._lease.start()

    def stop(self) -> None:
        self._done.set()
        self._lease.stop()

    def _renewed(self, run: e.Run) -> None:
        if not (run.cancel_requested and run.status == e.PREPARING):
            self._cancel_seen = None
        elif self._cancel_seen is None:
            self._cancel_seen = time.monotonic()
        elif time.monotonic() - self._cancel_seen > CANCEL_GRACE_S:
            self.runs.transition(self.run_id, e.CANCELED, "canceled by the user before Ray Train started training",
                                 self.attempt)
            self.leases.release_lease(self.run_id, self.attempt, self.owner)
            self._exit(0, "canceled before any Ray Train worker started training")

    def _lost(self) -> None:
        if not self._done.wait(LEASE_GRACE_S):
            self._exit(EXIT_FENCED, f"run {self.run_id} is no longer held by attempt {self.attempt} and Ray Train "
                       f"has not stopped within {LEASE_GRACE_S:.0f} s")

    @staticmethod
    def _exit(code: int, why: str) -> None:
        """Leave now: Ray ends the trainer and its workers with the driver that started them."""
        print(f"{why}; stopping Ray Train", flush=True)
        sys.stderr.flush()
        os._exit(code)


def _modelbuilder_env() -> dict[str, str]:
    """The MODELBUILDER_* settings of this process, with the home made absolute, for the Ray workers."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MODELBUILDER_")}
    env["MODELBUILDER_HOME"] = str(get_settings().resolved_home)
    return env


def _connect(address: str) -> str | None:
    """ray.init(address) within CONNECT_TIMEOUT_S (it retries for minutes when nothing answers)."""
    failure: list[str] = []

    def init() -> None:
        try:
            ray.init(address=address, runtime_env={"env_vars": WORKER_ENV}, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - reported as the run's error
            failure.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=init, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        return f"no Ray cluster answered at {address} within {CONNECT_TIMEOUT_S:.0f} s"
    return f"could not connect to the Ray cluster at {address}: {failure[0][:300]}" if failure else None


def _disconnect() -> None:

    if ray.is_initialized():
        ray.shutdown()


def run_trainer(args: argparse.Namespace, run: e.Run) -> str | None:
    """Run Ray Train for this attempt; the error text when it failed for good, else None."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    cluster = ClusterResources.from_ray(args.address, ray.cluster_resources(), nodes)
    plan = plan_workers(default_catalog().get(args.size), run.recipe.get("processes"), cluster, args.priority,
                        share=run.share)
    storage = storage_path(run.id)
    print(f"Ray Train on the cluster at {args.address} ({cluster.describe()}): {plan.describe()}, "
          f"{plan.max_failures} worker-group restart(s) allowed; Ray storage {storage}/{run.id}", flush=True)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"run_id": run.id, "attempt": args.attempt, "owner": args.owner,
                           "env": _modelbuilder_env()},
        scaling_config=ScalingConfig(num_workers=plan.workers, use_gpu=plan.use_gpu,
                                     resources_per_worker=plan.resources_per_worker),
        run_config=RunConfig(name=run.id, storage_path=storage,
                             failure_config=FailureConfig(max_failures=plan.max_failures)),
    )
    try:
        trainer.fit()
    except Exception as exc:  # noqa: BLE001 - Ray Train gave up: the run's error
        return f"Ray Train failed: {_describe_failure(exc)}"
    return None


def _describe_failure(exc: BaseException, limit: int = 600) -> str:
    """One line for the run's error: each failed rank's own error, not Ray's tracebacks around it."""
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        text = f"{type(exc).__name__}: " + "; ".join(f"rank {rank}: {_gist(error)}"
                                                     for rank, error in sorted(failures.items()))
    else:
        text = f"{type(exc).__name__}: {_gist(exc)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _gist(error: BaseException) -> str:
    """The line of an error's text that says what happened: its last `SomeError: ...` line, else a line
    saying a process died, else its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    raised = [line for line in lines if _RAISED.match(line)]
    died = [line for line in lines if "died" in line]
    return (raised or died or lines or [type(error).__name__])[-1 if raised else 0][:240]


def drive(args: argparse.Namespace) -> int:
    with Services() as services:
        return _drive(args, services.runs, services.leases)


def _drive(args: argparse.Namespace, runs: RunService, leases: LeaseService) -> int:
    run = runs.get(args.run_id)
    if not holds(run, args.attempt, args.owner):
        print(f"run {args.run_id} is not held by attempt {args.attempt} of {args.owner}; nothing to do",
              file=sys.stderr)
        return EXIT_FENCED
    keeper = LeaseKeeper(runs, leases, args.run_id, args.attempt, args.owner)
    keeper.start()
    try:
        error = _connect(args.address)
        if error is None:
            try:
                error = run_trainer(args, run)
            except Exception as exc:  # noqa: BLE001 - the cluster or Ray failed around Ray Train
                error = f"Ray driver failed: {_describe_failure(exc)}"
    finally:
        keeper.stop()
        _disconnect()
    run = runs.get(args.run_id)
    if not holds(run, args.attempt, args.owner):
        print(f"Ray Train done; run {run.id} is {run.status}" + (f" ({error})" if error else ""), flush=True)
        return 0  # rank 0 reported the run's end (or gave it back to the queue)
    error = error or "Ray Train finished but the run did not report an end"
    print(error, file=sys.stderr, flush=True)
    try:
        leases.fail_or_retry(args.run_id, args.attempt, error)
    except StaleAttempt:
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelbuilder-ray-driver")
    parser.add_argument("run_id")
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--size", required=True)
    parser.add_argument("--priority", required=True)
    return drive(parser.parse_args(argv))


if __name__ == "__main__":
    # Run the module under its real name, not as __main__: Ray pickles `train_worker` by reference then,
    # and each worker imports it instead of unpickling a copy of this script.
    from modelbuilder.backends._ray_driver import main as _main

    code = _main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a thread stuck in ray.init (an unreachable cluster) must not hold the exit up
