"""The worker: one process that executes one attempt of one run and reports it to the store.

It runs `training.engine.run_training` with a Reporter that writes to the store, renews its lease by a
heartbeat thread (`core.leases.LeaseRenewal`), and turns the end of training into the run's next
status: Completed, Canceled (the best model so far still exported), back to the queue after a
preemption (from its checkpoint), or an error retry. Every write carries the attempt number; a
worker whose lease was taken over is fenced off and stops without writing anything more.

    python -m modelbuilder.backends.worker RUN_ID --attempt N --owner OWNER
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tqdm import tqdm

from modelbuilder.backends._pause import PausePoint
from modelbuilder.backends.sweep import drive_sweep
from modelbuilder.core import entities as e
from modelbuilder.core.leases import LeaseRenewal, LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.services import Services
from modelbuilder.errors import ModelBuilderError, StaleAttempt
from modelbuilder.results.files import LOGS
from modelbuilder.training.engine import run_training
from modelbuilder.training.loop import Preempted
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import NullReporter, Progress, StopReason

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the run went back to the queue
EXIT_FENCED = 76  # the lease was taken over; nothing more was written
FLUSH_S = 1.0
# The run's best metrics kept in the store (those its task has: multi-label runs have no macro accuracy).
BEST_METRICS = ("accuracy", "macro_accuracy", "macro_f1", "micro_f1", "mean_average_precision", "log_loss")


class LeaseLost(Exception):
    """This attempt no longer holds the run (another worker or the reaper took it over)."""


class CanceledBeforeTraining(Exception):
    """A cancel arrived while the data was still being prepared: there is no model to keep."""


class StoreReporter:
    """The engine's Reporter for a run in the store: statuses, progress, metrics, logs, checkpoints.

    Progress and log lines are buffered and flushed at most once a second, so a fast loop does not
    turn into a write per step; statuses, metrics and checkpoints are written at once. Its status and
    progress calls are also where a test's pause point holds the worker (`_pause.py`; tests only).
    """

    def __init__(self, runs: RunService, recorder: RunRecorder, leases: LeaseService, run: e.Run, owner: str,
                 run_dir: Path) -> None:
        self.runs, self.recorder, self.leases = runs, recorder, leases
        self.run_id, self.attempt, self.owner = run.id, run.attempt, owner
        self.run_dir = run_dir
        self.stop_requested: StopReason | None = None
        self.fenced = False
        self._pending_logs: list[tuple[str, str]] = []
        self._pending_progress: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._lease = LeaseRenewal(leases, run.id, run.attempt, owner, on_renewed=self._take_in,
                                   on_lost=self._fence)
        self._pause = PausePoint.for_run(run.id, run.attempt)  # None outside tests

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._lease.start()

    def close(self) -> None:
        self._lease.stop()
        self.flush()

    def _fence(self) -> None:
        self.fenced = True

    def _take_in(self, run: e.Run) -> None:
        """After each renewal of the lease: take in a cancel or a preemption asked for since the last one."""
        if run.cancel_requested:
            self.stop_requested = "cancel"
        elif run.preempt_requested and self.stop_requested is None:
            self.stop_requested = "preempt"
        self.flush()

    def _hold(self, **where: Any) -> None:
        """A test's pause point: store what was reported so far, wait for the release, then renew at
        once, so a stop the test asked for while the worker was held is seen at the next step."""
        assert self._pause is not None
        self.flush()
        self._pause.hold(**where)
        self._lease.renew_now()

    def _guard(self) -> None:
        if self.fenced:
            raise LeaseLost(f"run {self.run_id} attempt {self.attempt} lost its lease")

    def _write(self, fn: Any, *args: Any) -> None:
        self._guard()
        try:
            fn(*args)
        except StaleAttempt:
            self.fenced = True
            raise LeaseLost(f"run {self.run_id} attempt {self.attempt} was fenced off") from None

    def flush(self) -> None:
        with self._lock:
            logs, self._pending_logs = self._pending_logs, []
            progress, self._pending_progress = self._pending_progress, None
            self._last_flush = time.monotonic()
        if self.fenced:
            return
        try:
            if logs:
                self.recorder.append_logs(self.run_id, self.attempt, logs)
            if progress is not None:
                self.recorder.update_progress(self.run_id, self.attempt, progress)
        except StaleAttempt:
            self.fenced = True
        except ModelBuilderError:
            with self._lock:  # keep them for the next flush
                self._pending_logs[:0] = logs

    # --- Reporter ---------------------------------------------------------------------------------
    def status(self, status: str, reason: str = "") -> None:
        self.flush()
        # A run restarted inside the same attempt (Ray Train replacing a lost worker) is already there,
        # or past it (a restart while Finalizing trains no more but must not go back to Running).
        if status in (e.RUNNING, e.FINALIZING) and self.runs.get(self.run_id).status not in (status, e.FINALIZING):
            self._write(self.runs.transition, self.run_id, status, reason, self.attempt)
        self.log(f"{status}: {reason}")
        if self._pause is not None and self._pause.at_status(status):
            self._hold(status=status)

    def log(self, message: str, level: str = "info") -> None:
        print(f"[{level}] {message}", flush=True)  # also in the worker's own log file
        with self._lock:
            self._pending_logs.append((level, message))

    def progress(self, progress: Progress) -> None:
        with self._lock:
            self._pending_progress = {k: v for k, v in vars(progress).items() if v is not None}
            due = time.monotonic() - self._last_flush >= FLUSH_S
        if due:
            self.flush()
        if self._pause is not None and self._pause.at_progress(progress.phase, progress.epoch, progress.step):
            self._hold(phase=progress.phase, epoch=progress.epoch, step=progress.step)
        if progress.phase == "preparing" and self.stop_requested == "cancel":
            raise CanceledBeforeTraining("canceled while preparing the data")
        self._guard()

    def metrics(self, epoch: int, values: dict[str, float]) -> None:
        self._write(self.recorder.log_metrics, self.run_id, self.attempt, epoch, values)
        self._write(self.recorder.set_best_metrics, self.run_id, self.attempt,
                    {k: v for k, v in values.items() if k in ("val_accuracy", "val_loss")})

    def checkpoint(self, path: Path, epoch: int, step: int) -> None:
        relpath = path.relative_to(self.run_dir).as_posix()
        self._write(self.recorder.set_resume_point, self.run_id, self.attempt, relpath, epoch, step)

    def should_stop(self) -> StopReason | None:
        self._guard()
        return self.stop_requested


def execute(run_id: str, attempt: int, owner: str, *, restartable: bool = False) -> int:
    """Run one attempt; returns the process exit code. Under torchrun, ranks other than 0 only train.

    `restartable`: the launcher restarts failed workers itself (Ray Train's FailureConfig), so an
    unexpected error is raised to it with the run still held, for the restarted workers to resume from
    the last checkpoint, instead of being settled here.
    """
    _own_progress_bars()
    with Services() as services:
        if int(os.environ.get("RANK", "0")) > 0:
            return _follow_rank_zero(services, run_id)
        return _attempt(services, run_id, attempt, owner, restartable)


def _own_progress_bars() -> None:
    """tqdm (the ONNX exporter's graph passes use it) guards its bars with a multiprocessing lock by default.
    A worker that ends with os._exit leaves that lock to the resource tracker, which then warned of "1 leaked
    semaphore" at the end of every `modelbuilder train`. A worker's bars are its own: a thread lock will do."""
    tqdm.set_lock(threading.RLock())


def training_recipe(services: Services, run: e.Run) -> TrainConfig:
    """The run's recipe, its data asset (if it trains on one) read from this host's artifact store."""
    recipe = TrainConfig.from_dict(run.recipe)
    asset_file = services.data.run_data_file(run.id)
    return recipe.with_(data=str(asset_file)) if asset_file is not None else recipe


def _attempt(services: Services, run_id: str, attempt: int, owner: str, restartable: bool) -> int:
    runs, recorder, leases, artifacts = services.runs, services.recorder, services.leases, services.artifacts
    run = runs.get(run_id)
    if run.attempt != attempt or run.lease_owner != owner:
        print(f"run {run_id} is not held by attempt {attempt} of {owner}; nothing to do", file=sys.stderr)
        return EXIT_FENCED
    if run.is_sweep:  # a sweep's parent trains nothing itself: it drives its trials
        try:
            return drive_sweep(services, run, owner)
        except (LeaseLost, StaleAttempt) as lost:
            print(f"stopping: {lost}", file=sys.stderr)
            return EXIT_FENCED
    run_dir = artifacts.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(run_dir)
    reporter = StoreReporter(runs, recorder, leases, run, owner, run_dir)
    _install_signal_handlers(reporter)
    reporter.start()
    code = 0
    keep_lease = False
    try:
        recipe = training_recipe(services, run)
        resume = artifacts.resolve(run_id, run.resume_from) if run.resume_from else None
        result = run_training(recipe, run_dir, reporter, resume=resume)
        reporter.flush()
        # logs/ holds this process's own output, still growing: it is a diagnostic, not a result.
        recorder.record_artifacts(run_id, [a for a in artifacts.list(run_id) if not a.path.startswith(f"{LOGS}/")],
                                  attempt)
        best = {k: float(result.metrics[k]) for k in BEST_METRICS if k in result.metrics}  # those of its task
        recorder.set_best_metrics(run_id, attempt, {**best, "best_epoch": float(result.best_epoch)})
        charge(recorder, run_id, attempt)
        early = runs.get(run_id).termination_reason if result.stopped == "cancel" else None
        if early:  # stopped by its sweep: a finished trial, not a canceled run
            runs.transition(run_id, e.COMPLETED, f"early termination ({early}); validation accuracy "
                            f"{result.metrics['accuracy']:.4f} (best epoch {result.best_epoch})", attempt)
        elif result.stopped == "cancel":
            runs.transition(run_id, e.CANCELED, f"canceled by the user; the best model so far (epoch "
                            f"{result.best_epoch}) was exported", attempt)
        else:
            runs.transition(run_id, e.COMPLETED, f"validation accuracy {result.metrics['accuracy']:.4f} "
                            f"(best epoch {result.best_epoch}; {result.stopped.replace('_', ' ')})", attempt)
    except Preempted as stop:
        reporter.flush()
        where = "no checkpoint yet: the next attempt starts over"
        if stop.checkpoint is not None:
            recorder.set_resume_point(run_id, attempt, stop.checkpoint.relative_to(run_dir).as_posix(), stop.epoch,
                                      stop.step)
            where = f"checkpoint at epoch {stop.epoch + 1}, step {stop.step}"
        why = runs.get(run_id).preempt_reason or "preempted (SIGTERM)"
        charge(recorder, run_id, attempt)
        leases.preempted(run_id, attempt, f"{why}; {where}")
        code = EXIT_PREEMPTED
    except (LeaseLost, StaleAttempt) as lost:
        print(f"stopping: {lost}", file=sys.stderr)
        return EXIT_FENCED
    except CanceledBeforeTraining as canceled:
        reporter.flush()
        charge(recorder, run_id, attempt)
        runs.transition(run_id, e.CANCELED, str(canceled), attempt)
    except ModelBuilderError as mistake:
        # The user's data or recipe: trying again cannot help, so fail now with the fix.
        reporter.log(str(mistake), "error")
        reporter.flush()
        charge(recorder, run_id, attempt)
        runs.transition(run_id, e.FAILED, mistake.message, attempt, error=str(mistake))
        code = 1
    except BaseException as exc:  # noqa: BLE001 - a bug or a fault: retried within the error budget
        traceback.print_exc()
        reporter.log(f"{type(exc).__name__}: {exc}", "error")
        reporter.flush()
        if restartable:
            keep_lease = True
            raise
        charge(recorder, run_id, attempt)
        leases.fail_or_retry(run_id, attempt, f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        reporter.close()
        if not keep_lease:  # a restarted Ray worker group goes on with this attempt: charged at its end
            charge(recorder, run_id, attempt)  # when it was fenced off; otherwise it was, and this adds nothing
            try:
                leases.release_lease(run_id, attempt, owner)
            except ModelBuilderError:
                pass  # fenced or the store is gone: the reaper settles the lease
    return code


def charge(recorder: RunRecorder, run_id: str, attempt: int) -> None:
    """Charge this attempt's time, before the run's end is stored, so that an ended run shows its
    final cost. Once per attempt: if the agent or the reaper got there first, this adds nothing."""
    try:
        recorder.charge_attempt(run_id, attempt)
    except ModelBuilderError:
        pass  # the store is gone: the agent that sees this process exit, or the reaper, charges it


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Half-written files of an attempt that was killed (temporary names of atomic writes)."""
    removed = []
    for path in sorted(run_dir.rglob("*"), reverse=True):
        name = path.name
        if path.is_file() and (name.endswith(".tmp") or name.startswith(".tmp-")):
            path.unlink(missing_ok=True)
            removed.append(path)
        elif path.is_dir() and name.startswith(".") and ".generating-" in name:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _follow_rank_zero(services: Services, run_id: str) -> int:
    """A data-parallel rank other than 0: the same training, reporting nothing (rank 0 reports)."""
    run = services.runs.get(run_id)
    artifacts = services.artifacts
    resume = artifacts.resolve(run_id, run.resume_from) if run.resume_from else None
    try:
        run_training(training_recipe(services, run), artifacts.run_dir(run_id), NullReporter(), resume=resume)
    except Preempted:
        return EXIT_PREEMPTED
    return 0


def _install_signal_handlers(reporter: StoreReporter) -> None:
    """SIGTERM (a spot eviction, an agent's preemption) and SIGUSR1 ask for a checkpoint and exit."""
    if threading.current_thread() is not threading.main_thread():
        return  # Ray Train runs the train function in a thread; signals reach the main thread only

    def preempt(signum: int, frame: Any) -> None:
        if reporter.stop_requested is None:
            reporter.stop_requested = "preempt"

    signal.signal(signal.SIGTERM, preempt)
    signal.signal(signal.SIGUSR1, preempt)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="modelbuilder-worker")
    parser.add_argument("run_id")
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--owner", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(execute(args.run_id, args.attempt, args.owner))


if __name__ == "__main__":
    main()
