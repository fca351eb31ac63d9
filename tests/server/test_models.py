"""`/api/v1/workspaces/{workspace}/models`: register, list, show, alias, download, and the same one-line
errors as the CLI and the SDK, with the fix worded as a request."""

from __future__ import annotations

import io
import zipfile

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.results.files import ZIP_FILE
from modelbuilder.results.runtime import PredictionEngine
from tests.completed import TrainedRun, make_completed_run

MODELS = "/api/v1/workspaces/default/models"


def test_register_list_show_alias_download(client: TestClient, services: Services, completed_run: str,
                                           trained: TrainedRun):
    second = make_completed_run(services, trained)
    first = client.post(MODELS, json={"run_id": completed_run, "name": "pets"})
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["reference"]) == (1, "pets:1")
    assert first.json()["metrics"]["accuracy"] == trained.metrics["accuracy"]
    v2 = client.post(MODELS, json={"run_id": second, "name": "pets", "alias": "production"}).json()
    assert (v2["version"], v2["aliases"]) == (2, ["production"])

    listed = client.get(MODELS).json()
    assert [(m["name"], m["aliases"], [v["version"] for v in m["versions"]]) for m in listed] == [
        ("pets", {"production": 2}, [2, 1])]
    assert client.get(f"{MODELS}/pets").json()["versions"][1]["run_id"] == completed_run
    assert client.get(f"{MODELS}/pets/versions/production").json()["run_id"] == second
    moved = client.put(f"{MODELS}/pets/aliases/production", json={"version": 1})
    assert moved.status_code == 200, moved.text
    assert client.get(f"{MODELS}/pets/versions/production").json()["version"] == 1

    bundle = client.get(f"{MODELS}/pets/versions/2/download")
    assert bundle.status_code == 200, bundle.text
    assert 'filename="pets-2.zip"' in bundle.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        members = set(archive.namelist())
        assert 'version = "2"' in archive.read("Tiny.Model/pyproject.toml").decode()
    assert {"MLModel.zip", "bestModel.onnx", "bestModelMap.json", "Tiny.WebApi/main.py",
            "Tiny.ConsoleApp/main.py"} <= members

    image = sorted(trained.data.rglob("*.png"))[0]
    by_alias = client.post(f"{MODELS}/pets/versions/production/predict",
                           files={"file": (image.name, image.read_bytes())})
    assert by_alias.status_code == 200, by_alias.text
    expected = PredictionEngine.load(services.artifacts.run_dir(completed_run) / ZIP_FILE).predict(image)
    assert by_alias.json()["prediction"] == expected.prediction
    assert by_alias.json()["score"] == pytest.approx(expected.score, abs=1e-6)

    assert client.delete(f"{MODELS}/pets/aliases/production").status_code == 204
    _problem(client.post(f"{MODELS}/pets/versions/production/predict", files={"file": ("a.png", b"x")}), 404,
             "not_found", "has no alias 'production'")
    assert client.get(f"{MODELS}/pets").json()["aliases"] == {}


def _problem(response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    for word in words:
        assert word in body["message"] + " " + body["hint"], (word, body)


def test_mistakes_get_the_reason_and_the_request_that_fixes_it(client: TestClient, completed_run: str,
                                                               queued_run: str):
    _problem(client.get(f"{MODELS}/pets"), 404, "not_found", "no registered model 'pets'",
             "GET /api/v1/workspaces/default/models")
    _problem(client.post(MODELS, json={"run_id": queued_run, "name": "pets"}), 409, "conflict", "no results yet")
    _problem(client.post(MODELS, json={"run_id": "run-000000000000", "name": "pets"}), 404, "not_found",
             "run-000000000000")
    assert client.post(MODELS, json={"run_id": completed_run, "name": "p"}).status_code == 422
    assert client.post(MODELS, json={"run_id": completed_run, "name": "pets", "alias": "9"}).status_code == 422
    assert client.post(MODELS, json={"run_id": completed_run, "name": "pets"}).status_code == 201
    _problem(client.get(f"{MODELS}/pets/versions/7"), 404, "not_found", "has no version 7",
             "GET /api/v1/workspaces/default/models/pets")
    _problem(client.get(f"{MODELS}/pets/versions/staging"), 404, "not_found", "has no alias 'staging'")
    _problem(client.put(f"{MODELS}/pets/aliases/production", json={"version": 3}), 404, "not_found",
             "has no version 3")
    _problem(client.get(f"{MODELS}/pets/versions/0"), 422, "invalid_input", "version '0' is not valid")
    _problem(client.post("/api/v1/workspaces/nowhere/models", json={"run_id": completed_run, "name": "pets"}),
             404, "not_found", "Workspace 'nowhere' does not exist")
