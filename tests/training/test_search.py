"""Search spaces: Azure's names and distributions, every bad space file refused in one line, and what the
driver hands Optuna (distributions, samplers, pruners) decided by Optuna itself."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from modelbuilder.backends.sweep import distributions, pruner_for, sampler_for
from modelbuilder.errors import InvalidInput
from modelbuilder.sdk.sweep import sweep_settings
from modelbuilder.training import search
from modelbuilder.training.recipe import TrainConfig

EVERY_KIND = """\
model_name: choice(resnet18, mobilenet_v3_large)
learning_rate: loguniform(-9.2, -4.6)
weight_decay: uniform(0.01, 0.1)
training_batch_size: {type: choice, values: [16, 32]}
number_of_epochs: 4
training_crop_size: {type: uniform, min_value: 64, max_value: 128}
weighted_loss: choice(0, 2)
label_smoothing: {type: loguniform, min_value: -5, max_value: -2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_a_space_file_with_each_distribution_and_azure_names(tmp_path: Path) -> None:
    space = search.load_space(write(tmp_path, EVERY_KIND))
    assert space["model_name"] == {"type": "choice", "values": ["resnet18", "mobilenet_v3_large"]}
    assert space["learning_rate"] == {"type": "loguniform", "min_value": -9.2, "max_value": -4.6}
    assert space["weight_decay"] == {"type": "uniform", "min_value": 0.01, "max_value": 0.1}
    assert space["training_batch_size"] == {"type": "choice", "values": [16, 32]}
    assert space["number_of_epochs"] == {"type": "choice", "values": [4]}  # a plain value is fixed
    dists = distributions(space)
    # Azure's loguniform bounds are natural logs: values between exp(-9.2) and exp(-4.6).
    assert dists["learning_rate"] == optuna.distributions.FloatDistribution(math.exp(-9.2), math.exp(-4.6), log=True)
    assert dists["training_crop_size"] == optuna.distributions.IntDistribution(64, 128)  # an integer setting
    assert dists["weighted_loss"] == optuna.distributions.CategoricalDistribution([0, 2])
    settings = search.recipe_settings({"model_name": "resnet18", "learning_rate": 0.001, "weighted_loss": 2,
                                       "training_crop_size": 96, "number_of_epochs": 4, "training_batch_size": 16,
                                       "label_smoothing": 0.05})
    assert settings == {"architecture": "resnet18", "lr": 0.001, "class_weights": "balanced", "image_size": 96,
                        "epochs": 4, "batch_size": 16, "label_smoothing": 0.05}
    TrainConfig.from_dict({"data": "", **settings})  # a trial's settings make a recipe


def test_azure_sweep_layout_and_the_auto_space(tmp_path: Path) -> None:
    space = search.load_space(write(tmp_path, "search_space:\n  - learning_rate: uniform(0.001, 0.01)\n"))
    assert space == {"learning_rate": {"type": "uniform", "min_value": 0.001, "max_value": 0.01}}
    auto = search.load_space("auto")
    assert set(auto["model_name"]["values"]) >= {"resnet50", "resnet18", "mobilenet_v3_large", "efficientnet_b0"}
    assert min(auto["training_crop_size"]["values"]) == search.MIN_IMAGE_SIZE
    # The default recipe lies in the auto space, so the sweep's first trial is the default recipe (what it
    # leaves to the data, image and batch size, is drawn).
    start = search.starting_point(auto, TrainConfig(data=""))
    assert start == {"model_name": "resnet50", "learning_rate": 2e-3, "weight_decay": 0.05, "crop_scale_min": 0.5,
                     "label_smoothing": 0.1}
    assert search.starting_point(auto, TrainConfig(data="", architecture="tiny")) is None  # not in the space


@pytest.mark.parametrize(("text", "fragments"), [
    ("learning_rate: [unclosed", ("is not valid YAML",)),
    ("- a\n- b\n", ("must be a mapping",)),
    ("optimizer: choice(sgd, adam)\n", ("unknown parameter 'optimizer'", "model_name")),
    ("layers_to_freeze: choice(0, 2)\n", ("layers_to_freeze is not supported", "mode")),
    ("learning_rate: normal(0.01, 0.001)\n", ("distribution 'normal' is not supported", "loguniform")),
    ("learning_rate: {type: quniform, min_value: 1, max_value: 2}\n", ("'quniform' is not supported",)),
    ("model_name: {type: choice, values: []}\n", ("choice needs at least one value",)),
    ("learning_rate: uniform(0.01)\n", ("uniform() takes two bounds, got 1",)),
    ("learning_rate: uniform(0.1, 0.01)\n", ("is empty", "low < high")),
    ("weight_decay: {type: uniform, min_value: a, max_value: 1}\n", ("needs numeric min_value and max_value",)),
    ("model_name: choice(resnet50, vgg16)\n", ("model_name 'vgg16'", "is not available")),
    ("training_crop_size: choice(32, 64)\n", ("below the search's floor of 64 px",)),
    ("weighted_loss: choice(0, 3)\n", ("weighted_loss 3 is not valid", "0, 1 or 2")),
    ("learning_rate: uniform(-1, 0.01)\n", ("lr must be positive",)),
    ("search_space:\n  - lr: choice(0.1)\n  - lr: choice(0.2)\n", ("2 subspaces",)),
    ("learning_rate: loguniform(0.0001, 1000)\n", ("natural logs", "out of range")),
    ("lr: choice(0.1)\nlearning_rate: choice(0.2)\n", ("sets 'lr' twice",)),
])
def test_every_bad_space_file_is_refused_in_one_line(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInput) as caught:
        search.load_space(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.hint, "every refusal says how to fix it"
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_missing_space_file_and_grid_over_ranges_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        search.load_space(tmp_path / "nowhere.yaml")
    with pytest.raises(InvalidInput, match="Grid sampling takes choice"):
        search.SweepSettings(space=search.load_space("auto"), sampling="grid")
    with pytest.raises(InvalidInput, match="Sampling 'sobol' is not valid"):
        search.SweepSettings(space={}, sampling="sobol")


def test_ties_go_to_the_faster_model() -> None:
    ranked = sorted([("resnet50", 224, 0.9), ("mobilenet_v3_large", 224, 0.9), ("resnet18", 64, 0.95)],
                    key=lambda t: search.rank_key(t[2], t[0], t[1]))
    assert [t[0] for t in ranked] == ["resnet18", "mobilenet_v3_large", "resnet50"]


def test_the_median_policy_stops_a_trial_that_is_clearly_behind() -> None:
    """Azure's meaning: not before epoch `delay_evaluation`, then every `evaluation_interval` epochs."""
    settings = search.SweepSettings(space={"lr": {"type": "choice", "values": [0.01, 1e-9]}}, sampling="grid",
                                    early_termination="median", evaluation_interval=1, delay_evaluation=2)
    study = optuna.create_study(direction="maximize", sampler=sampler_for(settings), pruner=pruner_for(settings))
    leader = study.ask()
    for epoch in (1, 2, 3):
        leader.report(1.0, epoch)
    study.tell(leader, 1.0)
    behind = study.ask()
    behind.report(0.0, 1)
    assert not behind.should_prune()  # epoch 1 < delay_evaluation 2: not evaluated yet
    behind.report(0.0, 2)
    assert behind.should_prune()
    level = study.ask()
    level.report(1.0, 2)
    assert not level.should_prune()  # as good as the median: goes on


def test_hyperband_and_none_policies() -> None:
    space = {"lr": {"type": "choice", "values": [0.01]}}
    assert isinstance(pruner_for(search.SweepSettings(space=space, early_termination="hyperband")),
                      optuna.pruners.HyperbandPruner)
    assert isinstance(pruner_for(search.SweepSettings(space=space, early_termination="none")), optuna.pruners.NopPruner)
    assert isinstance(sampler_for(search.SweepSettings(space=space, sampling="bayesian")), optuna.samplers.TPESampler)
    assert isinstance(sampler_for(search.SweepSettings(space=space, sampling="random")), optuna.samplers.RandomSampler)


AZURE_SWEEP = """\
sampling_algorithm: grid
early_termination: {type: median_stopping, evaluation_interval: 2, delay_evaluation: 3}
limits: {max_trials: 4, max_concurrent_trials: 2}
search_space:
  - model_name: choice(resnet18, mobilenet_v3_large)
    learning_rate: choice(0.001, 0.01)
"""


def test_azures_sweep_layout_sets_the_options_the_faces_override(tmp_path: Path) -> None:
    path = write(tmp_path, AZURE_SWEEP)
    settings = sweep_settings(path)
    assert settings is not None
    assert (settings.sampling, settings.early_termination, settings.evaluation_interval, settings.delay_evaluation,
            settings.max_trials, settings.max_concurrent_trials) == ("grid", "median", 2, 3, 4, 2)
    assert set(settings.space) == {"model_name", "learning_rate"}
    overridden = sweep_settings(path, sampling="random", max_trials=2)
    assert overridden is not None
    assert (overridden.sampling, overridden.max_trials, overridden.early_termination) == ("random", 2, "median")


@pytest.mark.parametrize(("text", "fragments"), [
    ("search_space: [{lr: choice(0.1)}]\ngoal: maximize\n", ("unknown key(s) goal beside search_space",)),
    ("search_space: [{lr: choice(0.1)}]\nearly_termination: {type: bandit, slack_factor: 0.1}\n",
     ("early_termination", "is not supported", "median_stopping")),
    ("search_space: [{lr: choice(0.1)}]\nlimits: {max_trials: 2, timeout: 600}\n",
     ("unknown key(s) timeout in limits", "--time-budget")),
    ("search_space: [{lr: choice(0.1)}]\nsampling_algorithm: sobol\n", ("Sampling 'sobol' is not valid",)),
])
def test_a_bad_azure_sweep_layout_is_refused_in_one_line(tmp_path: Path, text: str,
                                                         fragments: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInput) as caught:
        sweep_settings(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
