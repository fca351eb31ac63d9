"""A sweep on a ray compute against a real Ray head: the parent's driver runs on this host (holding none of
the cluster), and its trials are ordinary Ray Train runs of the compute, two at a time, each planned within
its half of the compute's size (held at a pause point until both are seen training at once)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.sdk import submit, sweep
from modelbuilder.training.recipe import TrainConfig
from tests.backends.test_ray import ray_address  # noqa: F401 - the module's Ray head (a fixture)
from tests.plane import Plane

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install 'modelbuilder[ray]'"),
]


def test_a_sweep_on_a_ray_compute_runs_two_trials_at_once(plane: Plane, agent: Any,
                                                          ray_address: str) -> None:  # noqa: F811
    compute = plane.computes.create("default", "cluster", "Standard_D2s_v3", kind="ray", address=ray_address)
    assert compute.state == e.SUCCEEDED, compute.error
    settings = sweep.sweep_settings({"learning_rate": "choice(0.01, 0.02)", "model_name": "tiny",
                                     "number_of_epochs": 2}, max_trials=2, max_concurrent_trials=2, sampling="grid",
                                    early_termination="none")
    recipe = TrainConfig.from_dict(plane.recipe())
    plane.holds.at("training 2 1")
    with Services() as services:
        parent = submit.submit(services, recipe, compute="cluster", sweep=settings).run
        plane.wait(parent.id, lambda run: len(plane.runs.children(run.id)) == 2, what="two trials")
        first, second = plane.runs.children(parent.id)
        plane.wait_held(first.id, timeout=300)
        plane.wait_held(second.id, timeout=300)  # while the first is held: the two train side by side
        plane.holds.release(first.id, second.id)
        ended = plane.wait_ended(parent.id, timeout=600)
        assert ended.status == e.COMPLETED, plane.history(parent.id)
        trials = plane.runs.children(parent.id)
        assert [t.status for t in trials] == [e.COMPLETED, e.COMPLETED]
        assert {t.compute_name for t in trials} == {"cluster"}
        assert [t.share for t in trials] == [2, 2]  # each planned its Ray Train workers within half the size
        assert all(sorted(p.step for p in plane.recorder.metrics(t.id, "val_accuracy")) == [1, 2] for t in trials)
        assert (services.artifacts.run_dir(parent.id) / "MLModel.zip").is_file()
