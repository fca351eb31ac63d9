"""The sweep driver's time: each trial gets its share of what is left of the sweep's budget (a clock handed
to the driver, so nothing here depends on the machine's speed), and no trial starts that could not finish."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from modelbuilder.backends.ranking import best_trial, standing
from modelbuilder.backends.sweep import (
    EXPORT_RESERVE_S,
    FINAL_SHARE,
    MIN_TRIAL_S,
    SweepDriver,
    saved_seconds,
    trial_budget,
)
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.sdk import sweep
from tests.plane import Plane

SPACE = {"learning_rate": "uniform(0.001, 0.01)", "model_name": "tiny"}


def test_a_trial_gets_its_share_of_what_is_left() -> None:
    assert trial_budget(600, trials_left=3, parallel=1) == 200
    assert trial_budget(600, trials_left=4, parallel=2) == 300  # two waves of two
    assert trial_budget(100, trials_left=10, parallel=1) == MIN_TRIAL_S  # never too short to train an epoch
    assert trial_budget(40, trials_left=1, parallel=1) == 40  # never more than is left


def _claimed_sweep(plane: Plane, max_trials: int) -> e.Run:
    """A timed sweep's parent (600 s), claimed by an agent as the scheduler would."""
    settings = sweep.sweep_settings(SPACE, max_trials=max_trials, sampling="random")
    assert settings is not None
    parent = plane.runs.submit("default", "exp", "local", plane.recipe(time_budget_s=600, epochs=None),
                               project_name="Tiny", sweep=settings.to_dict())
    claimed = plane.leases.claim_next_run([parent.compute_id], "test-agent", 60)  # type: ignore[list-item]
    assert claimed is not None
    return claimed


def test_the_driver_plans_each_trial_within_the_sweeps_budget(plane: Plane) -> None:
    parent = claimed = _claimed_sweep(plane, max_trials=3)
    now = [parent.created_at + timedelta(seconds=100)]
    with Services() as services:
        driver = SweepDriver(services, claimed, "test-agent", clock=lambda: now[0])
        assert driver.may_start(0)
        driver.start_trial(0)
        first = plane.runs.children(parent.id)[0]
        # its share of what is left once the final trial's share is kept aside
        assert first.recipe["time_budget_s"] == (600 - 100 - EXPORT_RESERVE_S - FINAL_SHARE * 600) / 3
        assert first.recipe["epochs"] is None  # planned by the trial itself within its budget (training/budget.py)
        assert first.trial["number"] == 0  # type: ignore[index]
        assert first.parent_run_id == parent.id
        now[0] = parent.created_at + timedelta(seconds=600 * (1 - FINAL_SHARE) - EXPORT_RESERVE_S - MIN_TRIAL_S + 1)
        assert not driver.may_start(1)  # too little left for another search trial
        assert not driver.out_of_time()
        now[0] = parent.created_at + timedelta(seconds=600)
        assert driver.out_of_time()  # the driver then stops the trials still running


def test_minutes_saved_by_early_termination(plane: Plane) -> None:
    run = plane.runs.get(plane.submit().id)
    start = e.utcnow()
    stopped = replace(run, progress={"epoch": 2, "epochs": 10}, started_at=start,
                      ended_at=start + timedelta(seconds=60))
    assert saved_seconds(stopped) == 8 * 30  # 8 epochs it did not train, at 30 s each


def test_the_leaderboard_ranks_as_the_best_trial_is_chosen(plane: Plane) -> None:
    """A canceled trial was cut short: it ranks below every completed one, whatever its accuracy, in the
    leaderboard's order as in the choice of the best trial (which the leaderboard marks and puts first)."""
    run = plane.runs.get(plane.submit().id)

    def trial(status: str, accuracy: float | None, architecture: str = "resnet18") -> e.Run:
        return replace(run, id=f"{status}-{accuracy}-{architecture}", status=status,
                       best_metrics={} if accuracy is None else {"accuracy": accuracy},
                       recipe={**run.recipe, "architecture": architecture, "image_size": 64})

    trials = [trial(e.CANCELED, 0.9), trial(e.FAILED, 0.95), trial(e.COMPLETED, None),
              trial(e.COMPLETED, 0.6, "resnet50"), trial(e.COMPLETED, 0.6)]
    ranked = sorted(trials, key=standing)
    assert [t.id for t in ranked] == ["Completed-0.6-resnet18", "Completed-0.6-resnet50", "Canceled-0.9-resnet18",
                                      "Completed-None-resnet18", "Failed-0.95-resnet18"]  # no result: last
    assert best_trial(trials) == ranked[0]  # ties go to the faster model
    assert best_trial([trials[0], trials[1]]) == trials[0]  # a canceled one when none completed


def test_the_best_settings_are_trained_again_with_the_time_kept_for_them(plane: Plane) -> None:
    parent = claimed = _claimed_sweep(plane, max_trials=2)
    now = [parent.created_at + timedelta(seconds=10)]
    with Services() as services:
        driver = SweepDriver(services, claimed, "test-agent", clock=lambda: now[0])
        driver.start_trial(0)
        driver.start_trial(1)
        trials = plane.runs.children(parent.id)
        assert not driver.wants_final(trials)  # no trial has a result yet
        for accuracy in (0.5, 0.75):  # each trial ends as a worker ends it (claimed in order)
            held = plane.leases.claim_next_run([parent.compute_id], "test-worker", 60)  # type: ignore[list-item]
            assert held is not None
            plane.runs.transition(held.id, e.RUNNING, "training", held.attempt)
            services.recorder.set_best_metrics(held.id, held.attempt, {"accuracy": accuracy})
            plane.runs.transition(held.id, e.FINALIZING, "exporting", held.attempt)
            plane.runs.transition(held.id, e.COMPLETED, "done", held.attempt)
        trials = plane.runs.children(parent.id)
        best = max(trials, key=lambda t: t.best_metrics["accuracy"])
        now[0] = parent.created_at + timedelta(seconds=300)
        assert not driver.may_start(len(trials))  # the search is over (two trials of two)
        assert driver.wants_final(trials)
        driver.start_final(trials)
        final = plane.runs.children(parent.id)[-1]
        assert final.trial["final"] is True  # type: ignore[index]
        assert final.trial["params"] == best.trial["params"]  # type: ignore[index]
        assert final.recipe["time_budget_s"] == 600 - 300 - EXPORT_RESERVE_S  # all the time left
        assert not driver.wants_final(plane.runs.children(parent.id))  # once only
