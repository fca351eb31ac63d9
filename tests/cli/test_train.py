"""`modelbuilder train`: a recipe file gives the settings and flags override it, mistakes are one line, and
end to end (slow, in subprocesses as a user runs it) the command trains, follows, writes the results and
links the run's page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
                                    "time_budget_s: 10m\nclass_weights: balanced\n")
    cli("train", "--recipe", str(recipe), "--detach").ok()
    queued = _queued_recipe(store)
    assert queued["data"] == str(data.resolve())
    assert (queued["architecture"], queued["epochs"], queued["class_weights"]) == ("tiny", 3, "balanced")
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


# --- end to end, in subprocesses, as a user runs it ------------------------------------------------------
@pytest.mark.slow
def test_train_cli_end_to_end_with_default_workspace(plane, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    result = subprocess.run(
        [sys.executable, "-m", "modelbuilder", "train", "--data", str(plane.data), "--architecture", "tiny",
         "--weights", "none", "--epochs", "2", "--batch-size", "4", "--name", "Pets", "--output", str(out),
         "--class-weights", "sqrt"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done" in result.stdout
    assert "leaked semaphore" not in result.stderr  # the worker's tqdm lock, once left to the resource tracker
    # the data report, one line each with its counts, after the summary
    report = result.stdout[result.stdout.index("Data report"):]
    for line in ("Label balance: smallest 'cat' 8, largest 'dog' 8 training images (ratio 1.00); loss weighted by "
                 "label (sqrt)", "Duplicates within a label:", "Labelling conflicts: 0 pairs", "Leaks: 0 pairs",
                 "Likely wrong labels: 0 of 20 images", "Overfitting:"):
        assert line in report, (line, report)
    for name in ("Pets.ConsoleApp/main.py", "Pets.Model/pyproject.toml", "MLModel.zip", "bestModel.onnx",
                 "bestModelMap.json"):
        assert (out / name).exists(), name
    listed = subprocess.run([sys.executable, "-m", "modelbuilder", "runs", "list", "--json"], capture_output=True,
                            text=True, env=env, timeout=60)
    runs = json.loads(listed.stdout)
    assert [r["status"] for r in runs] == ["Completed"]
    again = tmp_path / "again"
    download = subprocess.run([sys.executable, "-m", "modelbuilder", "runs", "download", runs[0]["id"], "--output",
                               str(again)], capture_output=True, text=True, env=env, timeout=60)
    assert download.returncode == 0, download.stderr
    assert (again / "Pets.Model").is_dir()
    app = subprocess.run([sys.executable, str(again / "Pets.ConsoleApp" / "main.py")], capture_output=True,
                         text=True, timeout=60)
    assert app.returncode == 0, app.stderr
    assert "Predicted label:" in app.stdout


@pytest.mark.slow
def test_train_cli_mistakes_are_one_line_with_exit_code_2(plane, tmp_path):
    env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
    for args, needle in ((["--data", str(tmp_path / "missing")], "does not exist"),
                         (["--data", str(plane.data), "--epochs", "0"], "epochs must be a positive whole number"),
                         (["--data", str(plane.data), "--time-budget", "soon"], "Duration"),
                         (["--data", str(plane.data), "--compute", "nope"], "nope")):
        result = subprocess.run([sys.executable, "-m", "modelbuilder", "train", *args], capture_output=True,
                                text=True, env=env, timeout=60)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert needle in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_train_prints_the_portal_link_when_a_server_runs(plane, tmp_path):
    import httpx

    from tests.liveserver import Server

    server = Server(plane.home).start()
    try:
        env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
        result = subprocess.run(
            [sys.executable, "-m", "modelbuilder", "train", "--data", str(plane.data), "--architecture", "tiny",
             "--weights", "none", "--epochs", "1", "--detach"], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        line = next(line for line in result.stdout.splitlines() if line.startswith("Monitor current run: "))
        url = line.removeprefix("Monitor current run: ")
        assert url.startswith(f"{server.url}/workspaces/default/runs/run-")
        assert httpx.get(url, timeout=30).status_code == 200
        run_id = url.rsplit("/", 1)[1]
        assert plane.wait_ended(run_id).status == "Completed"  # the server's agent ran it
        from modelbuilder.sdk import Workspace

        assert Workspace.get("default").run(run_id).portal_url == url
    finally:
        server.stop()
