"""The time budget's arithmetic on its own: what fits, with what this machine measured."""

from __future__ import annotations

import pytest

from modelbuilder.training.budget import (
    CHECKPOINTS_PER_EPOCH,
    MAX_PLANNED_EPOCHS,
    PLAN_MARGIN,
    Costs,
    epochs_that_fit,
)


def test_an_epoch_costs_its_steps_its_evaluation_and_its_checkpoints():
    costs = Costs(step_s=0.5, eval_images_per_s=100.0, checkpoint_s=2.0)
    assert costs.epoch_s(steps=10, eval_images=200) == pytest.approx(5.0 + 2.0 + CHECKPOINTS_PER_EPOCH * 2.0)


def test_the_epochs_that_fit_leave_the_margin_and_the_export():
    costs = Costs(step_s=1.0, eval_images_per_s=1e9, checkpoint_s=0.0)
    seconds = 1000.0
    fits = epochs_that_fit(costs, seconds, steps=10, eval_images=0)
    assert fits * 10 <= seconds * (1 - PLAN_MARGIN) - costs.export_s() < (fits + 1) * 10


def test_slow_checkpoints_mean_fewer_epochs():
    quick = Costs(step_s=1.0, eval_images_per_s=1e9, checkpoint_s=0.0)
    slow = Costs(step_s=1.0, eval_images_per_s=1e9, checkpoint_s=5.0)
    assert epochs_that_fit(slow, 1000.0, 10, 0) < epochs_that_fit(quick, 1000.0, 10, 0)


def test_at_least_one_epoch_and_at_most_the_cap():
    costs = Costs(step_s=1.0, eval_images_per_s=1.0)
    assert epochs_that_fit(costs, 1.0, steps=100, eval_images=100) == 1
    assert epochs_that_fit(Costs(step_s=1e-6, eval_images_per_s=1e9), 1e6, 1, 1) == MAX_PLANNED_EPOCHS
