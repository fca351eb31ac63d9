"""`modelbuilder train --recipe FILE`: the file gives the settings, flags override it, mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from tests.cli.driver import Cli


def _recipe_file(folder: Path, text: str) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


def _queued_recipe(store: Store) -> dict:
    [run] = RunService(store).list("default")
    assert run.status == "Queued"
    return run.recipe


def test_train_takes_the_data_and_settings_from_the_recipe_file(cli: Cli, store: Store, image_folder, tmp_path):
    data = image_folder("pets")
    recipe = _recipe_file(tmp_path, f"data: {data}\narchitecture: tiny\nweights: none\nepochs: 3\n"
                                    "time_budget_s: 10m\n")
    cli("train", "--recipe", str(recipe), "--detach").ok()
    queued = _queued_recipe(store)
    assert queued["data"] == str(data.resolve())
    assert (queued["architecture"], queued["epochs"]) == ("tiny", 3)
    assert queued["time_budget_s"] == 600.0  # a duration in the file is read as --time-budget reads it


def test_a_relative_data_path_in_the_recipe_file_is_relative_to_the_file(cli: Cli, store: Store, image_folder,
                                                                          tmp_path):
    data = image_folder("pets")
    recipe = _recipe_file(tmp_path, "data: pets\narchitecture: tiny\nweights: none\n")
    cli("train", "--recipe", str(recipe), "--detach").ok()
    assert _queued_recipe(store)["data"] == str(data.resolve())


def test_flags_override_the_recipe_file(cli: Cli, store: Store, image_folder, tmp_path):
    data, other = image_folder("pets"), image_folder("other")
    recipe = _recipe_file(tmp_path, f"data: {data}\narchitecture: tiny\nweights: none\nepochs: 3\n"
                                    "time_budget_s: 10m\n")
    cli("train", "--recipe", str(recipe), "--data", str(other), "--epochs", "2", "--time-budget", "90s",
        "--detach").ok()
    queued = _queued_recipe(store)
    assert queued["data"] == str(other.resolve())
    assert (queued["epochs"], queued["time_budget_s"], queued["architecture"]) == (2, 90.0, "tiny")


@pytest.mark.parametrize(("line", "fragments"), [
    ("time_budget_s: soon", ["Duration 'soon' is not valid", "10m"]),
    ("epochs: lots", ["epochs", "'lots'"]),
    ("architecture: vgg", ["'vgg'", "resnet50"]),
    ("learning_rate: 0.1", ["Unknown recipe setting", "learning_rate"]),
])
def test_a_bad_value_in_the_recipe_file_is_a_one_line_error(cli: Cli, image_folder, tmp_path, line, fragments):
    data = image_folder("pets")
    recipe = _recipe_file(tmp_path, f"data: {data}\narchitecture: tiny\n{line}\n")
    cli("train", "--recipe", str(recipe), "--detach").user_error(*fragments)


def test_without_data_in_the_file_or_a_flag_train_says_what_to_pass(cli: Cli, tmp_path):
    recipe = _recipe_file(tmp_path, "architecture: tiny\n")
    cli("train", "--recipe", str(recipe), "--detach").user_error("No training data", "--data")
    cli("train", "--detach").user_error("No training data", "--data")
