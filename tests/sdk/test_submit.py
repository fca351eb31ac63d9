"""Submitting (sdk/submit.py): the same bad submission gets the same one-line error from the CLI's `train`,
the SDK's `Experiment.submit` and `POST /api/v1/runs`, and nothing is queued.

Each case is a submission the application layer refuses; `expected` is the error it raises itself
(`recipe_from` + `check_data`), and each face must show exactly that message and fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.errors import DataError, InvalidInput, ModelBuilderError
from modelbuilder.sdk import Workspace, objects, submit
from modelbuilder.server.api import create_app
from tests.cli.driver import Cli, in_process
from tests.imagery import make_image_folder

TINY = {"architecture": "tiny", "weights": "none", "image_size": 32}


@dataclass(frozen=True)
class Case:
    data: Path
    settings: dict[str, Any]  # recipe settings beside the data, as the SDK and the API take them
    flags: tuple[str, ...]  # the same settings as `train` flags
    error: type[ModelBuilderError]
    says: str


def _unreadable(folder: Path) -> Path:
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for k in range(3):
            (folder / label / f"{k}.jpg").write_bytes(b"these bytes are no image")
    return folder


CASES: dict[str, Callable[[Path], Case]] = {
    "missing folder": lambda tmp: Case(tmp / "nowhere", {}, (), DataError, "does not exist"),
    "one label only": lambda tmp: Case(make_image_folder(tmp / "cats", per_label=4, labels=("cat",)), {}, (),
                                       DataError, "Only one label ('cat')"),
    "unreadable image set": lambda tmp: Case(_unreadable(tmp / "broken"), {}, (), DataError,
                                             "None of the 6 files"),
    "bad recipe value": lambda tmp: Case(make_image_folder(tmp / "pets", per_label=4), {"epochs": 0},
                                         ("--epochs", "0"), InvalidInput, "must be a positive whole number"),
    "bad class weights": lambda tmp: Case(make_image_folder(tmp / "pets", per_label=4), {"class_weights": "heavy"},
                                          ("--class-weights", "heavy"), InvalidInput,
                                          "class_weights 'heavy' is not valid"),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    return CASES[request.param](tmp_path)


@pytest.fixture
def services(home: Path) -> Iterator[Services]:
    with Services() as opened:
        yield opened


def expected(case: Case) -> ModelBuilderError:
    """What the application layer itself says of the submission."""
    with pytest.raises(case.error) as refused:
        submit.check_data(submit.recipe_from({"data": case.data, **TINY, **case.settings}))
    assert case.says in refused.value.message
    return refused.value


def nothing_queued(services: Services) -> None:
    workspaces = [w.name for w in services.workspaces.list()]
    assert all(services.runs.list(name) == [] for name in workspaces)


def test_the_cli_says_it(case: Case, home: Path, services: Services, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    cli: Cli = in_process(capsys, monkeypatch)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]
    line = cli("train", "--data", str(case.data), *flags, *case.flags, "--detach").user_error()
    error = expected(case)
    assert line == f"error: {error.message} Fix: {error.hint}"
    nothing_queued(services)


def test_the_sdk_says_it(case: Case, home: Path, services: Services) -> None:
    experiment = Workspace.get(services=services).experiment("pets")
    with pytest.raises(case.error) as refused:
        experiment.submit(data=case.data, **TINY, **case.settings)
    error = expected(case)
    assert (refused.value.message, refused.value.hint) == (error.message, error.hint)
    assert str(refused.value) == f"{error.message} Fix: {error.hint}"
    assert objects._default is None  # the services it was given, not a store of its own
    nothing_queued(services)


def test_the_api_says_it(case: Case, home: Path, services: Services) -> None:
    with TestClient(create_app(start_agents=False), base_url="http://127.0.0.1") as client:
        response = client.post("/api/v1/runs", json={"experiment": "pets", "recipe": {
            "data": str(case.data), **TINY, **case.settings}})
    error = expected(case)
    assert response.status_code == 422, response.text
    assert response.json() == {"code": error.code, "message": error.message, "hint": error.hint}
    nothing_queued(services)


def test_a_good_submission_is_queued_with_its_recipe_resolved(home: Path, services: Services, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_image_folder(tmp_path / "my pets", per_label=4)
    monkeypatch.chdir(tmp_path)
    recipe = submit.recipe_from({"data": "my pets", "time_budget": "2m", **TINY})
    assert (recipe.data, recipe.time_budget_s, recipe.name) == (str(data.resolve()), 120.0, "MyPets")
    first = submit.submit(services, recipe, idempotency_key="one")
    assert (first.workspace, first.run.experiment_name, first.run.status) == ("default", "my-pets", "Queued")
    assert first.made is not None  # the default workspace and its local compute, made on first use
    again = submit.submit(services, recipe, idempotency_key="one")
    assert (again.run.id, again.made) == (first.run.id, None)
    assert [run.id for run in services.runs.list("default")] == [first.run.id]


def test_paths_in_a_recipe_file_are_relative_to_the_file(home: Path, tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "recipes" / "pets", per_label=4)
    recipe_file = tmp_path / "recipes" / "recipe.yaml"
    recipe_file.write_text("data: pets\nepochs: 3\ntime_budget_s: 10m\n")
    recipe = submit.recipe_from({"epochs": 2}, recipe_file)
    assert (recipe.data, recipe.epochs, recipe.time_budget_s) == (str(data.resolve()), 2, 600.0)


def test_the_recipe_says_what_is_wrong_with_one_setting() -> None:
    said = submit.setting_error("architecture", "vgg")
    assert said is not None
    assert "'vgg'" in said.message
    assert submit.setting_error("epochs", 3) is None
    assert submit.setting_error("lr", "fast") is None  # a value of another type: the recipe cannot say
