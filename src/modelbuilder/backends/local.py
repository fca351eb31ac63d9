"""The `local` backend: a run's worker is a subprocess on this host.

A separate process, not a thread, so that a crash of the training code (or of a native library under
it) cannot take the agent, the CLI or the server down. Workers are forked from a fork server that has
already imported torch and the engine, so a run starts in well under a second instead of ~10 s of
imports. Each worker gets a process session of its own, so a Ctrl-C in the terminal that started
`modelbuilder train` reaches the CLI (which cancels the run cleanly) and not the worker directly. Its
output goes to `logs/worker-<attempt>.log` in the run's folder.

Every training process runs at the niceness MODELBUILDER_WORKER_NICE (default 10): a forked worker
lowers its own priority first thing, and a launched group (torchrun, a Ray driver) starts under
`nice`, so each process it starts inherits it. Training then yields the CPU to the server and the
CLI on the same host, and keeps every cycle they leave idle.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modelbuilder.config import get_settings
from modelbuilder.core import entities as e
from modelbuilder.core.scheduler import SWEEP_LAUNCHER, local_pool, need_of, register_launcher, signal_name
from modelbuilder.core.services import artifact_store
from modelbuilder.core.sizes import SizeSpec
from modelbuilder.results.files import worker_log

_FORK_CONTEXT: Any = None


def _fork_context() -> Any:
    """A multiprocessing fork server that has imported torch and the engine once (see _preload)."""
    global _FORK_CONTEXT
    if _FORK_CONTEXT is None:
        # OpenMP threads that spin while they wait slow training down ten-fold as soon as anything else
        # wants the CPU (measured: 2.4 s vs 0.2 s per ResNet-18 step on 2 busy cores). Read by the
        # OpenMP runtime when torch loads, so it is set before the fork server imports torch.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["modelbuilder.backends._preload"])
        _FORK_CONTEXT = context
    return _FORK_CONTEXT


def lower_priority(nice: int) -> None:
    """Make this process at least `nice` nice (never nicer than it is: raising priority needs privileges)."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def niced(command: list[str], nice: int) -> list[str]:
    """`command` started at niceness `nice` through nice(1), so that every process it starts inherits it.

    nice(1) adds to the caller's niceness; the increment makes the result `nice` (or leaves a process
    that is already nicer as it is)."""
    increment = nice - os.getpriority(os.PRIO_PROCESS, 0)
    tool = shutil.which("nice")
    return [tool, "-n", str(increment), *command] if increment > 0 and tool else command


@dataclass
class LocalWorker:
    run_id: str
    attempt: int
    process: Any  # multiprocessing.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def poll(self) -> int | None:
        return self.process.exitcode  # negative: killed by that signal

    def interrupt(self) -> None:
        """Ask for a checkpoint and an exit at the next step (as a spot eviction's SIGTERM would)."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.poll() is None:
            self.process.kill()
            self.process.join(10)

    def describe_exit(self) -> str:
        tail = _last_line(self.log_path)
        return f"worker exited ({signal_name(self.poll() or 0)}) before reporting an end" + (
            f"; last output: {tail}" if tail else "")


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _child(run_id: str, attempt: int, owner: str, env: dict[str, str], log_path: str, threads: int,
           nice: int) -> None:
    """The worker process, forked from the fork server: its own session, priority, log file and environment."""
    os.setsid()  # a Ctrl-C in the terminal of `modelbuilder train` reaches the CLI, not the worker
    lower_priority(nice)  # before any thread exists: every thread and DataLoader process inherits it
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()  # the fork server's environment is the one it started with: use the agent's now
    os.environ.update(env)
    # Imported in the forked child: the fork server preloaded them (_preload.py), so these are lookups,
    # and the agent process that launches workers never imports torch or the engine itself.
    from modelbuilder.backends.worker import execute

    if threads:
        import torch

        torch.set_num_threads(threads)
    code = execute(run_id, attempt, owner)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class SessionWorker:
    """A worker that is a subprocess leading a session of its own: a torchrun group, a Ray driver.

    Stops go through the store, not signals: rank 0 sees a cancel or a preemption at its next heartbeat
    (within seconds) and stops every rank at the same step; a launcher would die of a signal it does
    not handle.
    """

    run_id: str
    attempt: int
    process: subprocess.Popen[bytes]
    log_path: Path
    what: ClassVar[str] = "worker group"

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def interrupt(self) -> None:
        pass

    def kill(self) -> None:
        """Kill the whole session (the launcher and every process it started)."""
        if self.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def describe_exit(self) -> str:
        tail = _last_line(self.log_path)
        return f"{self.what} exited ({signal_name(self.poll() or 0)}) before the run reported an end" + (
            f"; last output: {tail}" if tail else "")


class TorchrunWorker(SessionWorker):
    """A data-parallel worker group: `torch.distributed.run` with one process per GPU (or --processes)."""


def processes_for(run: e.Run, size: SizeSpec) -> int:
    """--processes from the recipe, else one per GPU of the size, else one."""
    return int(run.recipe.get("processes") or (size.gpus if size.gpus > 1 else 1))


class LocalLauncher:
    # GPU index -> the worker holding it. The scheduler guarantees the count; this picks which ones.
    _gpu_holders: dict[int, Any] = {}

    @classmethod
    def _assign_gpus(cls, count: int) -> list[int]:
        host = local_pool().gpus
        free = [i for i in range(host) if (holder := cls._gpu_holders.get(i)) is None or holder.poll() is not None]
        return free[:count]

    def launch(self, run: e.Run, owner: str, size: SizeSpec, compute: e.Compute) -> LocalWorker | TorchrunWorker:
        run_dir = artifact_store().run_dir(run.id)
        log_path = run_dir / worker_log(run.attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        need = need_of(size, local_pool())
        # A CPU size gets the cores it pays for, so runs sharing the host do not fight over them.
        threads = need.cpus if need.cpus and not need.gpus else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        gpus = self._assign_gpus(need.gpus) if need.gpus else []
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        worker = self._start(run, owner, size, env, threads, log_path, get_settings().worker_nice)
        for index in gpus:
            self._gpu_holders[index] = worker
        return worker

    def _start(self, run: e.Run, owner: str, size: SizeSpec, env: dict[str, str], threads: int,
               log_path: Path, nice: int) -> LocalWorker | TorchrunWorker:
        processes = processes_for(run, size)
        if processes > 1:
            env["OMP_NUM_THREADS"] = str(max(1, (threads or local_pool().cpus) // processes))
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                       "--module", "modelbuilder.backends.worker", run.id, "--attempt", str(run.attempt),
                       "--owner", owner]
            with log_path.open("ab") as out:
                group = subprocess.Popen(niced(command, nice), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            return TorchrunWorker(run.id, run.attempt, group, log_path)
        return fork_worker(run, owner, env, threads, log_path, nice)


def fork_worker(run: e.Run, owner: str, env: dict[str, str], threads: int, log_path: Path, nice: int) -> LocalWorker:
    """The run's worker, forked from the fork server (see `_child`)."""
    process = _fork_context().Process(target=_child, name=f"worker {run.id}",
                                      args=(run.id, run.attempt, owner, env, str(log_path), threads, nice))
    process.start()
    # Not a child multiprocessing should wait for at exit: a worker outlives `train` or a server
    # that stops, and finishes its run on its own.
    multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]
    return LocalWorker(run.id, run.attempt, process, log_path)


class SweepLauncher:
    """A sweep's parent: its driver (`backends/sweep.py`, through the worker) in a forked process of its
    own, on any compute kind, holding no CPU slot or GPU (its trials hold them)."""

    def launch(self, run: e.Run, owner: str, size: SizeSpec, compute: e.Compute) -> LocalWorker:
        log_path = artifact_store().run_dir(run.id) / worker_log(run.attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return fork_worker(run, owner, {**os.environ, "PYTHONUNBUFFERED": "1"}, 0, log_path,
                           get_settings().worker_nice)


register_launcher("local", LocalLauncher)
register_launcher(SWEEP_LAUNCHER, SweepLauncher)
