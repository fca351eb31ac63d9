"""Starting a run from an earlier model, through the CLI, the SDK and the API alike: a run id resolves to that
run's best checkpoint in the artifact store, and the recipe records where it started."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.errors import InvalidInput, NotFound, WeightsError
from modelbuilder.results.files import BEST_CHECKPOINT, ZIP_FILE
from modelbuilder.sdk import Workspace, submit
from tests.cli.driver import Cli
from tests.completed import TINY_RECIPE, TrainedRun, make_completed_run

TINY = {k: v for k, v in TINY_RECIPE.items() if k != "name"}


@pytest.fixture
def parent(services: Services, trained: TrainedRun) -> str:
    return make_completed_run(services, trained)


def _started_from(services: Services, run_id: str) -> tuple[str, str]:
    recipe = services.runs.get(run_id).recipe
    return recipe["from_model"], recipe["from_run"]


def test_a_run_id_means_its_best_checkpoint_from_every_face(services: Services, parent: str, trained: TrainedRun,
                                                           cli: Cli, client: TestClient) -> None:
    best = str(services.artifacts.run_dir(parent) / BEST_CHECKPOINT)
    by_sdk = Workspace.get(services=services).experiment("more").submit(trained.data, from_run=parent, **TINY)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]
    said = cli("train", "--data", str(trained.data), "--from-run", parent, *flags, "--detach").ok()
    by_cli = said.stdout.split("Run ")[1].split()[0]
    response = client.post("/api/v1/runs", json={"experiment": "more", "recipe": {
        "data": str(trained.data), "from_run": parent, **TINY}})
    assert response.status_code == 201, response.text
    for run_id in (by_sdk.id, by_cli, response.json()["id"]):
        assert _started_from(services, run_id) == (best, parent)
    assert f"started from {parent}" in cli("runs", "show", by_cli).ok().stdout


def test_a_runs_mlmodel_zip_means_that_run(services: Services, parent: str, trained: TrainedRun) -> None:
    folder = services.artifacts.run_dir(parent)
    for named in (folder / ZIP_FILE, folder, folder / BEST_CHECKPOINT):
        recipe = submit.starting_point(services, submit.recipe_from({"data": trained.data, "from_model": named}))
        assert (recipe.from_model, recipe.from_run) == (str(folder / BEST_CHECKPOINT), parent)


def test_a_checkpoint_elsewhere_is_taken_as_it_is(services: Services, trained: TrainedRun, tmp_path: Path) -> None:
    copy = tmp_path / "kept.pt"
    shutil.copyfile(trained.folder / BEST_CHECKPOINT, copy)
    recipe = submit.starting_point(services, submit.recipe_from({"data": trained.data, "from_model": copy}))
    assert (recipe.from_model, recipe.from_run) == (str(copy), None)


def test_a_copy_of_a_runs_mlmodel_zip_means_that_run(services: Services, parent: str, trained: TrainedRun,
                                                    tmp_path: Path) -> None:
    copy = tmp_path / "downloaded" / ZIP_FILE  # as `modelbuilder runs download` or the portal hands it out
    copy.parent.mkdir()
    shutil.copyfile(services.artifacts.run_dir(parent) / ZIP_FILE, copy)
    recipe = submit.starting_point(services, submit.recipe_from({"data": trained.data, "from_model": copy}))
    assert (recipe.from_model, recipe.from_run) == (str(services.artifacts.run_dir(parent) / BEST_CHECKPOINT), parent)


def test_a_zip_no_run_made_is_refused(services: Services, trained: TrainedRun, tmp_path: Path) -> None:
    lone = tmp_path / ZIP_FILE
    shutil.copyfile(trained.folder / ZIP_FILE, lone)  # no run of this store recorded these bytes
    with pytest.raises(WeightsError, match="not a finished run's model") as info:
        submit.starting_point(services, submit.recipe_from({"data": trained.data, "from_model": lone}))
    assert "--from-run" in info.value.hint


def test_mistakes_are_the_same_one_line_from_every_face(services: Services, parent: str, trained: TrainedRun,
                                                       cli: Cli, client: TestClient, tmp_path: Path) -> None:
    unknown = "run-000000000000"
    with pytest.raises(NotFound) as refused:
        submit.submit(services, submit.recipe_from({"data": trained.data, "from_run": unknown, **TINY}))
    error = refused.value
    line = cli("train", "--data", str(trained.data), "--from-run", unknown, "--detach").user_error()
    assert line.startswith(f"error: {error.message} Fix: ")  # each face words the fix's step its own way
    response = client.post("/api/v1/runs", json={"experiment": "more", "recipe": {
        "data": str(trained.data), "from_run": unknown}})
    assert response.status_code == error.http_status
    assert response.json()["message"] == error.message
    with pytest.raises(InvalidInput, match="Both a run and a model"):
        Workspace.get(services=services).experiment("more").submit(
            trained.data, from_run=parent, from_model=trained.folder / ZIP_FILE)
    assert client.post("/api/v1/runs", json={"experiment": "more", "recipe": {
        "data": str(trained.data), "from_model": str(trained.folder / BEST_CHECKPOINT)}}).status_code == 422
    assert [run.id for run in services.runs.list("default")] == [parent]  # nothing else was queued
