"""The scheduler: agents that start queued runs when capacity allows, preempt for dedicated runs,
and settle the runs of workers that died.

Capacity lives in pools. All `local` computes of this host share one pool: its GPUs, or CPU slots
where it has none (one per core, or `MODELBUILDER_CPU_SLOTS`). A run holds what its compute's size
needs for as long as it is Preparing, Running or Finalizing. Every `ray` compute is a pool of its own
(the cluster), holding one run at a time. A sweep's trials hold their share of their compute
(`run_size`), so that several run side by side; a sweep's parent holds nothing (its trials do).
What is held is read from the store, never from an agent's memory, so several agents (a server and
a `train` command, or two servers) share one truth.

Queued runs start strictly in order: dedicated before low-priority, then oldest first. A dedicated run
that does not fit asks low-priority runs of its pool to give way (newest first): they checkpoint at
their next step and go back to the queue, to resume when capacity frees. Dedicated runs are never
preempted.

Launching is not done here: a backend registers a launcher for its compute kind
(`register_launcher`), so the control plane never imports the training engine.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy import select

from modelbuilder.core import _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.leases import LEASE_S, LeaseService
from modelbuilder.core.runs import RunService
from modelbuilder.core.sizes import SizeCatalog, SizeSpec, default_catalog, host_capacity
from modelbuilder.core.store import Store
from modelbuilder.errors import Conflict, ModelBuilderError, StoreUnavailable

log = logging.getLogger("modelbuilder.scheduler")



class WorkerHandle(Protocol):
    run_id: str
    attempt: int

    def poll(self) -> int | None: ...

    def interrupt(self) -> None: ...

    def describe_exit(self) -> str: ...


class Launcher(Protocol):
    def launch(self, run: e.Run, owner: str, size: SizeSpec, compute: e.Compute) -> WorkerHandle: ...


_LAUNCHERS: dict[str, Callable[[], Launcher]] = {}
SWEEP_LAUNCHER = "sweep"  # launches a sweep's parent, whatever its compute's kind: it drives, trials train


def register_launcher(kind: str, factory: Callable[[], Launcher]) -> None:
    _LAUNCHERS[kind] = factory


@dataclass(frozen=True)
class Need:
    gpus: int = 0
    cpus: int = 0

    def __add__(self, other: Need) -> Need:
        return Need(self.gpus + other.gpus, self.cpus + other.cpus)

    def __sub__(self, other: Need) -> Need:
        return Need(self.gpus - other.gpus, self.cpus - other.cpus)

    def fits_in(self, free: Need) -> bool:
        return self.gpus <= free.gpus and self.cpus <= free.cpus


def need_of(size: SizeSpec, slots: Need) -> Need:
    """A GPU size holds its GPUs; a CPU size holds one CPU slot per vCPU (at most the whole pool)."""
    if size.gpus:
        return Need(gpus=size.gpus)
    return Need(cpus=min(size.vcpus, slots.cpus) if slots.cpus else size.vcpus)


def run_size(size: SizeSpec, run: e.Run) -> SizeSpec:
    """What a run holds of its compute's size: all of it, or for a sweep's trial its share (`Run.share`:
    one of the trials that run at once), as whole GPUs, or vCPUs where the size has no GPU."""
    share = run.share
    if share <= 1:
        return size
    return replace(size, vcpus=max(1, size.vcpus // share), gpus=size.gpus // share if size.gpus else 0,
                   memory_gib=size.memory_gib / share, gpu_memory_gib=size.gpu_memory_gib / share)


def local_pool() -> Need:
    host = host_capacity()
    configured = os.environ.get("MODELBUILDER_CPU_SLOTS")
    cpus = int(configured) if configured and configured.isdigit() and int(configured) > 0 else host.vcpus
    return Need(gpus=host.gpus, cpus=cpus)


def pool_key(compute: e.Compute) -> str:
    return "local" if compute.kind == "local" else f"{compute.kind}:{compute.id}"


class Agent:
    """Claims and launches runs for the compute kinds it serves; one thread, one step a second."""

    def __init__(self, store: Store, kinds: Sequence[str] = ("local",), owner: str | None = None,
                 poll_s: float = 1.0, catalog: SizeCatalog | None = None) -> None:
        self.store = store
        self.runs, self.leases = RunService(store), LeaseService(store)
        self.kinds = tuple(kinds)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_s = poll_s
        self.catalog = catalog or default_catalog()
        self.pool = local_pool()
        self.workers: dict[str, WorkerHandle] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- running ----------------------------------------------------------------------------------
    def start(self) -> Agent:
        self._thread = threading.Thread(target=self._loop, name=f"agent {self.owner}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except ModelBuilderError as exc:  # the store is briefly unavailable: try again
                log.warning("agent step failed: %s", exc)
            except Exception:  # noqa: BLE001 - an agent must outlive a bad step
                log.exception("agent step failed")
            self._stop.wait(self.poll_s)

    def step(self) -> None:
        """Reap lost leases, settle finished workers, then preempt and start what the queue allows."""
        self.leases.requeue_expired()
        self._settle_workers()
        computes = self._computes()
        held, queued = self._runs(list(computes))
        for key in sorted({pool_key(c) for c in computes.values()}):
            self._schedule_pool(key, computes, held, queued)

    # --- internals --------------------------------------------------------------------------------
    def _computes(self) -> dict[str, e.Compute]:
        with self.store.read() as session:
            rows = session.scalars(select(r.ComputeRow).where(r.ComputeRow.kind.in_(self.kinds),
                                                              r.ComputeRow.state == e.SUCCEEDED))
            return {row.id: r.compute(row) for row in rows}

    def _runs(self, compute_ids: list[str]) -> tuple[list[e.Run], list[e.Run]]:
        """Held runs (what capacity is taken) and queued runs in start order, on these computes."""
        active = list(self._active_runs(compute_ids))
        held = [run for run in active if run.status in e.HELD]
        queued = sorted((run for run in active if run.status == e.QUEUED),
                        key=lambda run: (run.priority != "dedicated", run.created_at, run.id))
        return held, queued

    def _active_runs(self, compute_ids: list[str]) -> list[e.Run]:
        if not compute_ids:
            return []

        with self.store.read() as session:
            rows = session.scalars(select(r.RunRow).where(r.RunRow.compute_id.in_(compute_ids),
                                                          r.RunRow.status.in_(e.HELD | {e.QUEUED})))
            return [_lookup.run_entity(session, row) for row in rows]

    def _size(self, compute: e.Compute) -> SizeSpec:
        return self.catalog.get(compute.size)

    def _capacity(self, key: str, computes: dict[str, e.Compute]) -> Need:
        if key == "local":
            return self.pool
        compute = next(c for c in computes.values() if pool_key(c) == key)
        return need_of(self._size(compute), Need())

    def _schedule_pool(self, key: str, computes: dict[str, e.Compute], held: list[e.Run],
                       queued: list[e.Run]) -> None:
        in_pool = {cid for cid, c in computes.items() if pool_key(c) == key}
        capacity = self._capacity(key, computes)

        def needs(run: e.Run) -> Need:
            if run.is_sweep:
                return Need()
            return need_of(run_size(self._size(computes[run.compute_id]), run), capacity)  # type: ignore[index]

        held_here = [run for run in held if run.compute_id in in_pool and not run.is_sweep]
        free = capacity
        for run in held_here:
            free = free - needs(run)
        for run in [q for q in queued if q.compute_id in in_pool]:
            need = needs(run)
            if need.fits_in(free):
                claimed = self.leases.claim_next_run([run.compute_id], self.owner, LEASE_S)  # type: ignore[list-item]
                if claimed is None:
                    continue  # another agent took it first
                self._launch(claimed, computes[claimed.compute_id])  # type: ignore[index]
                free = free - needs(claimed)
                continue
            if run.priority == "dedicated":
                self._make_room(run, need, free, held_here, needs)
            return  # strict order: nothing behind a run that waits may start before it

    def _make_room(self, waiting: e.Run, need: Need, free: Need, held: list[e.Run],
                   needs: Callable[[e.Run], Need]) -> None:
        """Ask low-priority runs (newest first) to give way to a dedicated run that does not fit."""
        victims = sorted((run for run in held if run.priority == "low-priority"),
                         key=lambda run: run.created_at, reverse=True)
        chosen: list[e.Run] = []
        would_free = free
        for run in victims:
            if need.fits_in(would_free):
                break
            chosen.append(run)
            would_free = would_free + needs(run)
        if not need.fits_in(would_free):
            return  # even preempting every low-priority run would not make room: just wait
        for run in chosen:
            if run.preempt_requested:
                continue
            reason = f"preempted for dedicated run {waiting.id} on compute {waiting.compute_name!r}"
            try:
                self.runs.request_preempt(run.id, reason)
            except ModelBuilderError:
                continue  # it ended meanwhile
            worker = self.workers.get(run.id)
            if worker is not None and worker.attempt == run.attempt:
                worker.interrupt()  # faster than waiting for the worker's next heartbeat
            log.info("%s: %s", run.id, reason)

    def _launch(self, run: e.Run, compute: e.Compute) -> None:
        factory = _LAUNCHERS.get(SWEEP_LAUNCHER if run.is_sweep else compute.kind)
        if factory is None:
            self.leases.fail_or_retry(run.id, run.attempt, f"no launcher for compute kind {compute.kind!r}")
            return
        try:
            self.workers[run.id] = factory().launch(run, self.owner, run_size(self._size(compute), run), compute)
        except Exception as exc:  # noqa: BLE001 - a launch failure is the run's error, not the agent's
            self.leases.fail_or_retry(run.id, run.attempt, f"could not start a worker: {exc}")

    def _settle_workers(self) -> None:
        """A worker that exited without reporting an end leaves its run held: retry or fail it now,
        instead of waiting for its lease to expire; one killed before it charged its attempt is
        charged here (`LeaseService.worker_exited`)."""
        for run_id, worker in list(self.workers.items()):
            if worker.poll() is None:
                continue
            try:
                self.leases.worker_exited(run_id, worker.attempt, self.owner, worker.describe_exit())
            except StoreUnavailable as exc:
                log.warning("%s: could not settle its exited worker yet: %s", run_id, exc)
                continue  # try again at the next step
            except ModelBuilderError as exc:  # the run was deleted meanwhile
                log.warning("%s: could not settle its exited worker: %s", run_id, exc)
            del self.workers[run_id]

    def interrupt_all(self) -> None:
        for worker in self.workers.values():
            worker.interrupt()


def signal_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def evict(store: Store, workspace: str, compute_name: str,
          reason: str = "evicted (spot capacity reclaimed)") -> list[str]:
    """Interrupt the running low-priority runs of a compute, as a spot eviction would (for drills and
    tests): each checkpoints at its next step, goes back to the queue, and resumes from there."""
    compute = ComputeService(store).get(workspace, compute_name)
    if compute.priority != "low-priority":
        raise Conflict(f"Compute {compute_name!r} is dedicated; dedicated runs are never interrupted.",
                       "evict a low-priority compute.")
    runs = RunService(store)
    evicted = []
    for run in runs.list(workspace, compute=compute_name, limit=10_000):
        if run.status in e.HELD and not run.preempt_requested:
            try:
                runs.request_preempt(run.id, reason)
                evicted.append(run.id)
            except ModelBuilderError:
                continue  # it ended meanwhile
    return evicted
