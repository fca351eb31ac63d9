"""The sweep driver: the worker of a sweep's parent run, which trains nothing itself but drives its trials.

Each trial is an ordinary run (a child of the parent) in the scheduler's pool: leases, logs, metrics,
retries and resume after a kill are the scheduler's and the worker's, as for any run. The driver asks
Optuna for settings (ask/tell: its samplers for random, grid and bayesian, its pruners for median and
hyperband early termination), submits a trial per settings while fewer than `max_concurrent_trials`
run, reports each trial's validation accuracy per epoch to the pruner as the trial records it, and
stops a trial the pruner finds behind (`RunService.request_early_termination`: it exports its best
model so far and ends Completed, "early termination"). With a time budget, each trial gets a share of
what is left, within which its own epochs are planned (`training/budget.py`).

With a time budget, FINAL_SHARE of it is kept for a final trial: when the search trials are done, the
best settings they found are trained once more with all the time left, a whole planned schedule (the
search trials' short schedules rank settings well enough; their models are not the best those settings
give). The final trial is never pruned. At the end, or on a cancel of the parent, the best finished
trial's result (validation accuracy, ties to the faster model) is copied into the parent's folder.

The study lives beside the parent's files (a journal file of Optuna's) and every trial is in the store,
so a driver killed and restarted (another attempt of the parent) carries on where it was.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import optuna
import optuna.storages.journal

from modelbuilder.backends.ranking import best_trial, result_of
from modelbuilder.core import entities as e
from modelbuilder.core.leases import LeaseRenewal
from modelbuilder.core.scheduler import local_pool, need_of
from modelbuilder.core.services import Services
from modelbuilder.core.sizes import AUTO, default_catalog
from modelbuilder.errors import ModelBuilderError, StaleAttempt
from modelbuilder.results.files import CHECKPOINT_DIR, LOGS
from modelbuilder.training import search
from modelbuilder.training.recipe import TrainConfig

POLL_S = 1.0
EXPORT_RESERVE_S = 5.0  # copying the best trial's result into the parent's folder
MIN_TRIAL_S = 60.0  # less than this left: no new trial (it could not train an epoch and export)
FINAL_SHARE = 0.5  # of a timed sweep's budget, kept for the final trial of the best settings found
STUDY_FILE = "study.journal"
METRIC = "val_accuracy"

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, asked and told: its `after_trial` stops `Study.optimize` once the grid is done, which
    raises outside `optimize`; the driver counts the grid's points itself (`SweepDriver.may_start`)."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Any) -> None:
        pass


def sampler_for(settings: search.SweepSettings) -> optuna.samplers.BaseSampler:
    if settings.sampling == "grid":
        return _GridSampler(search.grid_of(settings.space), seed=settings.seed)
    if settings.sampling == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=max(2, min(10, settings.max_trials // 3)))


def pruner_for(settings: search.SweepSettings) -> optuna.pruners.BasePruner:
    if settings.early_termination == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=settings.delay_evaluation,
                                           interval_steps=settings.evaluation_interval)
    if settings.early_termination == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.delay_evaluation,
                                                               settings.evaluation_interval))
    return optuna.pruners.NopPruner()


def distributions(space: dict[str, dict[str, Any]]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space as Optuna distributions (integer settings sample whole numbers)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, spec in space.items():
        if spec["type"] == "choice":
            out[name] = optuna.distributions.CategoricalDistribution(spec["values"])
            continue
        log = spec["type"] == "loguniform"
        low, high = (math.exp(spec["min_value"]), math.exp(spec["max_value"])) if log else (
            spec["min_value"], spec["max_value"])
        if search.integer_setting(search.setting_of(name)):
            out[name] = optuna.distributions.IntDistribution(math.ceil(low), max(math.ceil(low), math.floor(high)),
                                                             log=log)
        else:
            out[name] = optuna.distributions.FloatDistribution(low, high, log=log)
    return out


def trial_budget(left_s: float, trials_left: int, parallel: int) -> float:
    """A new trial's time budget: what is left of the sweep's, shared by the waves of trials still to start
    (`parallel` at a time); at least MIN_TRIAL_S, never more than what is left."""
    waves = max(1, math.ceil(trials_left / parallel))
    return min(left_s, max(MIN_TRIAL_S, left_s / waves))


def saved_seconds(trial: e.Run) -> float:
    """About how much training early termination spared a trial: its epochs left of the planned ones, at
    the time its epochs took."""
    done, planned = trial.progress.get("epoch"), trial.progress.get("epochs")
    if not done or not planned or trial.started_at is None or trial.ended_at is None:
        return 0.0
    return max(0, planned - done) * (trial.ended_at - trial.started_at).total_seconds() / done


class SweepDriver:
    def __init__(self, services: Services, parent: e.Run, owner: str,
                 clock: Callable[[], datetime] = e.utcnow) -> None:
        self.services, self.owner, self.clock = services, owner, clock
        self.parent, self.attempt = parent, parent.attempt
        self.settings = search.SweepSettings.from_dict(parent.sweep or {})
        self.base = TrainConfig.from_dict(parent.recipe)
        self.workspace = services.workspaces.names_by_id()[parent.workspace_id]
        run_dir = services.artifacts.run_dir(parent.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(run_dir / STUDY_FILE)))
        self.study = optuna.create_study(study_name=parent.id, storage=storage, direction="maximize",
                                         sampler=sampler_for(self.settings), pruner=pruner_for(self.settings),
                                         load_if_exists=True)
        self.distributions = distributions(self.settings.space)
        self.reported: dict[str, int] = {}  # trial run id -> last epoch reported to the pruner
        self.cancel = False
        self.lost = False  # another attempt holds the parent now (set by the lease's heartbeat)
        self.deadline = None
        self.final_reserve = 0.0  # seconds kept for the final trial (none without a budget or with one trial)
        if self.base.time_budget_s is not None:  # the user's time: from the submission, the export included
            self.deadline = parent.created_at.timestamp() + self.base.time_budget_s
            if self.settings.max_trials > 1:
                self.final_reserve = FINAL_SHARE * self.base.time_budget_s
        self.parallel = min(self.settings.max_concurrent_trials, self._slots())
        self.data = services.data.run_data(parent.id)  # (asset, version) the parent was submitted on, or None

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        runs = self.services.runs
        if self.services.runs.get(self.parent.id).status != e.RUNNING:
            runs.transition(self.parent.id, e.RUNNING, f"searching: up to {self.settings.max_trials} trials, "
                            f"{self.parallel} at a time, {self.settings.sampling} sampling, "
                            f"{self.settings.early_termination} early termination", self.attempt)
        self._log(f"Search space ({self.settings.search}): " + ", ".join(
            f"{name} {_shown(spec)}" for name, spec in self.settings.space.items()))
        if self.settings.sampling != "grid" and not self.study.trials:  # a grid is its own order
            start = search.starting_point(self.settings.space, self.base)
            if start is not None:
                self.study.enqueue_trial(start)  # the first trial is the recipe the sweep starts from
        while True:
            if self.lost:
                raise StaleAttempt(f"run {self.parent.id} attempt {self.attempt} lost its lease",
                                   "nothing to do: another attempt drives the sweep.")
            trials = runs.children(self.parent.id)
            self._resubmit_lost(trials)
            self._follow(trials)
            active = [t for t in trials if not t.terminal]
            if self.cancel or self._stop_requested():
                self.cancel = True
                for trial in active:
                    if not trial.cancel_requested:  # asked once, not on every poll
                        self._quietly(runs.request_cancel, trial.id, "its sweep was canceled")
            elif self.out_of_time():
                for trial in active:
                    if not trial.cancel_requested:
                        self._quietly(runs.request_early_termination, trial.id, "the sweep's time budget is spent")
            elif len(active) < self.parallel and self.may_start(len(trials)):
                self.start_trial(len(trials))
                continue
            elif not active and self.wants_final(trials):
                self.start_final(trials)
                continue
            if not active and (self.cancel or not self.may_start(len(trials))):
                break
            time.sleep(POLL_S)
        self._finish(runs.children(self.parent.id))

    # --- trials -----------------------------------------------------------------------------------
    def may_start(self, started: int) -> bool:
        """Whether another trial may start after `started` ones: trials, the grid and the time allow it."""
        if started >= self.settings.max_trials or self.cancel:
            return False
        if self.settings.sampling == "grid" and started >= math.prod(
                len(spec["values"]) for spec in self.settings.space.values()):
            return False
        return self.deadline is None or self._search_left() >= MIN_TRIAL_S

    def _left(self) -> float:
        assert self.deadline is not None
        return self.deadline - self.clock().timestamp() - EXPORT_RESERVE_S

    def _search_left(self) -> float:
        """What is left for search trials: all that is left but the final trial's share."""
        return self._left() - self.final_reserve

    def wants_final(self, trials: list[e.Run]) -> bool:
        """Whether the final trial should start now: the search is over, one trial has a result, none
        was the final one yet, and there is time to train it."""
        return (self.final_reserve > 0 and not self.cancel and best_trial(trials) is not None
                and not any(_is_final(t) for t in trials) and self._left() >= MIN_TRIAL_S)

    def start_final(self, trials: list[e.Run]) -> None:
        """Train the best trial's settings once more with all the time left."""
        best = best_trial(trials)
        assert best is not None
        assert best.trial is not None
        self.study.enqueue_trial(best.trial["params"])
        trial = self.study.ask(self.distributions)
        self._log(f"Final trial: the settings of trial {best.trial['number']} ({best.id}, validation accuracy "
                  f"{result_of(best):.4f}) with the {self._left():.0f} s left, a whole planned schedule.")
        self._submit(trial.number, trial._trial_id, trial.params, len(trials), final=True)

    def out_of_time(self) -> bool:
        return self.deadline is not None and self._left() <= 0

    def start_trial(self, started: int) -> None:
        """Ask Optuna for the next settings and submit them as a trial (the `started`-th)."""
        trial = self.study.ask(self.distributions)
        self._submit(trial.number, trial._trial_id, trial.params, started)

    def _submit(self, number: int, trial_id: int, params: dict[str, Any], started: int, final: bool = False) -> None:
        budget = None
        if self.deadline is not None:
            budget = self._left() if final else trial_budget(self._search_left(), self.settings.max_trials - started,
                                                             self.parallel)
        try:
            recipe = self.base.with_(**search.recipe_settings(params), time_budget_s=budget)
            TrainConfig.from_dict(recipe.to_dict())  # a combination the recipe refuses fails this trial only
        except ModelBuilderError as mistake:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            self._log(f"Trial {number}: {_settings(params)} cannot be trained: {mistake.message}", "warning")
            return
        child = self.services.runs.submit(
            self.workspace, self.parent.experiment_name, self.parent.compute_name, recipe.to_dict(),
            project_name=self.parent.project_name, idempotency_key=f"{self.parent.id}-trial-{number}",
            parent_run_id=self.parent.id, trial={"number": number, "optuna_id": trial_id, "params": params,
                                                 "share": self.parallel, **({"final": True} if final else {})},
            data_asset=self.data)  # the parent trains on a data asset: each worker reads it from its own store
        shown = f", {budget:.0f} s of the budget" if budget is not None else ""
        self._log(f"Trial {number} ({child.id}): {_settings(params)}{shown}.")

    def _resubmit_lost(self, trials: list[e.Run]) -> None:
        """An asked trial whose run was never submitted (the driver died in between): submit it now."""
        known = {t.trial["number"] for t in trials if t.trial}
        for frozen in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in known:
                self._submit(frozen.number, frozen._trial_id, frozen.params, len(trials))

    def _follow(self, trials: list[e.Run]) -> None:
        """Report new epochs of running trials to the pruner; tell Optuna how ended trials ended."""
        states = {t.number: t.state for t in self.study.get_trials(deepcopy=False)}
        for child in trials:
            number = (child.trial or {}).get("number")
            if number is None or states.get(number) != optuna.trial.TrialState.RUNNING:
                continue
            handle = optuna.trial.Trial(self.study, child.trial["optuna_id"])  # type: ignore[index]
            points = self.services.recorder.metrics(child.id, METRIC, after_step=self.reported.get(child.id, 0))
            for point in points:
                if not math.isnan(point.value):
                    handle.report(point.value, point.step)
                self.reported[child.id] = point.step
            if child.terminal:
                self._tell(child, number)
            elif points and not child.cancel_requested and not _is_final(child) and handle.should_prune():
                epoch, value = points[-1].step, points[-1].value
                why = (f"{self.settings.early_termination} policy at epoch {epoch}: validation accuracy "
                       f"{value:.4f} is behind the other trials")
                self._quietly(self.services.runs.request_early_termination, child.id, why)
                self._log(f"Trial {number} ({child.id}) stopped early: {why}.")

    def _tell(self, child: e.Run, number: int) -> None:
        value = result_of(child)
        if child.early_terminated:
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED)
        elif child.status == e.COMPLETED and value is not None:
            self.study.tell(number, value)
        else:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        self._log(f"Trial {number} ({child.id}) ended {child.status}: {child.status_reason}")

    # --- the end ----------------------------------------------------------------------------------
    def _finish(self, trials: list[e.Run]) -> None:
        runs, recorder, artifacts = self.services.runs, self.services.recorder, self.services.artifacts
        best = best_trial(trials)
        pruned = [t for t in trials if t.early_terminated]
        saved = sum(saved_seconds(t) for t in pruned)
        counts = f"{len(trials)} trial(s), {len(pruned)} stopped early" + (
            f" (about {saved / 60:.1f} min of their planned training saved)" if pruned else "")
        recorder.charge_attempt(self.parent.id, self.attempt)  # its time; no price (see core._billing)
        if best is None:
            status = e.CANCELED if self.cancel else e.FAILED
            why = "no trial finished with a result"
            runs.transition(self.parent.id, status, f"{why} ({counts})", self.attempt,
                            error=None if self.cancel else why)
            return
        number = (best.trial or {}).get("number")
        runs.transition(self.parent.id, e.FINALIZING, f"copying the best trial's result (trial {number}, "
                        f"{best.id})", self.attempt)
        source, target = artifacts.run_dir(best.id), artifacts.run_dir(self.parent.id)
        for path in source.iterdir():
            if path.name in (CHECKPOINT_DIR, LOGS):
                continue
            if path.is_dir():
                shutil.copytree(path, target / path.name, dirs_exist_ok=True)
            else:
                shutil.copy2(path, target / path.name)
        recorder.record_artifacts(self.parent.id, [a for a in artifacts.list(self.parent.id)
                                                   if not a.path.startswith(f"{LOGS}/")], self.attempt)
        metrics = {k: float(v) for k, v in best.best_metrics.items()}
        recorder.set_best_metrics(self.parent.id, self.attempt, {**metrics, "best_trial": float(number or 0)})
        accuracy = result_of(best) or 0.0
        summary = f"best trial {number} ({best.id}): validation accuracy {accuracy:.4f}; {counts}"
        if self.cancel:
            runs.transition(self.parent.id, e.CANCELED, f"canceled by the user; {summary}", self.attempt)
        else:
            runs.transition(self.parent.id, e.COMPLETED, summary, self.attempt)

    # --- helpers ----------------------------------------------------------------------------------
    def _slots(self) -> int:
        """How many trials may share the parent's compute at once: one per GPU of its size, else one per
        vCPU (on this host: per CPU slot the size holds of the pool). Each then holds its share."""
        compute = self.services.computes.get(self.workspace, self.parent.compute_name)
        size = default_catalog().get(compute.size)
        if compute.kind == "local":
            need = need_of(size, local_pool())
            return max(1, need.gpus or need.cpus)
        if size.name == AUTO:  # the whole cluster: as many as asked for (Ray plans each one's workers)
            return self.settings.max_concurrent_trials
        return max(1, size.gpus or size.vcpus)

    def lose(self) -> None:
        self.lost = True

    def _stop_requested(self) -> bool:
        return self.services.runs.get(self.parent.id).cancel_requested

    def _log(self, message: str, level: str = "info") -> None:
        print(f"[{level}] {message}", flush=True)
        self.services.recorder.append_logs(self.parent.id, self.attempt, [(level, message)])

    @staticmethod
    def _quietly(action: Callable[..., Any], *args: Any) -> None:
        try:
            action(*args)
        except ModelBuilderError:
            pass  # it ended meanwhile


def _settings(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _shown(spec: dict[str, Any]) -> str:
    if spec["type"] == "choice":
        return f"choice({', '.join(map(str, spec['values']))})"
    return f"{spec['type']}({spec['min_value']:.4g}, {spec['max_value']:.4g})"


def drive_sweep(services: Services, parent: e.Run, owner: str) -> int:
    """The parent's attempt: drive the sweep under the parent's lease; returns the exit code. Raises
    StaleAttempt once another attempt holds the parent."""
    driver = SweepDriver(services, parent, owner)
    lease = LeaseRenewal(services.leases, parent.id, parent.attempt, owner, on_renewed=lambda run: None,
                         on_lost=driver.lose)
    lease.start()
    try:
        driver.run()
    except ModelBuilderError as mistake:
        if isinstance(mistake, StaleAttempt):
            raise
        services.runs.transition(parent.id, e.FAILED, mistake.message, parent.attempt, error=str(mistake))
        return 1
    finally:
        lease.stop()
        try:
            services.leases.release_lease(parent.id, parent.attempt, owner)
        except ModelBuilderError:
            pass  # fenced, or the store is gone: the reaper settles the lease
    return 0


def _is_final(trial: e.Run) -> bool:
    """The sweep's final trial: the best settings trained once more with the time left, never pruned."""
    return bool((trial.trial or {}).get("final"))
