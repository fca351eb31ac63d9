"""The images behind a run's numbers and its data report, through the application layer: the same
answers and the same one-line errors from the SDK, the CLI (`modelbuilder runs errors|report`) and the
REST API (`/errors`, `/data-report`, `/thumbnails/{kind}/{index}`), and no thumbnail from outside the run.

predictions.csv of the trained run is replaced by rows with known scores, so the order is checked
against a known answer.
"""

from __future__ import annotations

import json
import zipfile

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.errors import ModelBuilderError
from modelbuilder.results.files import PREDICTIONS_FILE, THUMBNAILS_FILE
from modelbuilder.sdk import Workspace, insight
from modelbuilder.training.predictions import Prediction, write_predictions
from tests.cli.driver import Cli
from tests.completed import TrainedRun, make_completed_run

ROWS = [  # index, path, true, predicted, score, true score
    Prediction(0, "cat/a.png", "cat", "cat", 0.9, 0.9),
    Prediction(1, "cat/b.png", "cat", "dog", 0.6, 0.4),
    Prediction(2, "dog/c.png", "dog", "cat", 0.95, 0.05),
    Prediction(3, "dog/d.png", "dog", "dog", 0.55, 0.55),
    Prediction(4, "cat/e.png", "cat", "dog", 0.8, 0.2),
]


@pytest.fixture
def run_id(services: Services, trained: TrainedRun) -> str:
    run_id = make_completed_run(services, trained)
    write_predictions(services.artifacts.run_dir(run_id) / PREDICTIONS_FILE, ROWS)
    return run_id


def test_errors_most_confidently_wrong_first(services: Services, run_id: str) -> None:
    run = services.runs.get(run_id)
    assert [r.index for r in insight.errors(services, run)] == [2, 4, 1]
    assert [r.index for r in insight.errors(services, run, include_correct=True)] == [2, 4, 1, 3, 0]
    assert [r.index for r in insight.errors(services, run, true="cat")] == [4, 1]
    assert [r.index for r in insight.errors(services, run, predicted="cat")] == [2]
    assert [r.index for r in insight.errors(services, run, true="dog", predicted="dog", include_correct=True)] == [3]
    assert [r.index for r in insight.errors(services, run, label="dog")] == [2, 4, 1]
    assert [r.index for r in insight.errors(services, run, limit=1)] == [2]
    sdk_run = Workspace.get(services=services).run(run_id)
    assert sdk_run.errors(true="cat") == insight.errors(services, run, true="cat")
    assert sdk_run.data_report()["labels"] == ["cat", "dog"]
    assert sdk_run.thumbnail("predictions", 0) == insight.thumbnail(services, run, "predictions", 0)
    with pytest.raises(ModelBuilderError, match="no gallery 'logs'"):
        sdk_run.thumbnail("logs", 0)


def test_the_trained_runs_own_predictions_and_thumbnails(services: Services, trained: TrainedRun) -> None:
    run = services.runs.get(make_completed_run(services, trained))
    rows = insight.predictions(services, run)
    assert len(rows) == trained.metrics["num_images"]
    jpeg = insight.thumbnail(services, run, "predictions", len(rows) - 1)
    assert jpeg[:3] == b"\xff\xd8\xff"


def test_the_same_answer_from_the_cli_and_the_api(cli: Cli, client: TestClient, run_id: str) -> None:
    from_cli = cli("runs", "errors", run_id, "--true", "cat", "--json").json()
    from_api = client.get(f"/api/v1/runs/{run_id}/errors", params={"true": "cat"}).json()
    assert [r["index"] for r in from_cli] == [r["index"] for r in from_api] == [4, 1]
    assert cli("runs", "errors", run_id, "--all").ok().rows()[0][:4] == ["2", "dog/c.png", "dog", "cat"]
    report = client.get(f"/api/v1/runs/{run_id}/data-report").json()
    assert report == cli("runs", "report", run_id, "--json").json()
    text = cli("runs", "report", run_id).ok().stdout
    for line in report["summary"]:
        assert line["text"].split(":")[0] in text
    image = client.get(f"/api/v1/runs/{run_id}/thumbnails/predictions/0")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"


BAD_ERRORS = [  # (CLI options, API query, what the one line names)
    (["--true", "cow"], {"true": "cow"}, "has no label 'cow'"),
    (["--predicted", "cow"], {"predicted": "cow"}, "has no label 'cow'"),
    (["--label", "cow"], {"label": "cow"}, "has no label 'cow'"),
    (["--limit", "0"], {"limit": "0"}, "limit must be a positive whole number"),
]


@pytest.mark.parametrize(("options", "query", "said"), BAD_ERRORS)
def test_bad_filters_get_one_line_from_every_face(services: Services, cli: Cli, client: TestClient, run_id: str,
                                                  options: list[str], query: dict[str, str], said: str) -> None:
    cli("runs", "errors", run_id, *options).user_error(said)
    response = client.get(f"/api/v1/runs/{run_id}/errors", params=query)
    assert response.status_code in (400, 422), response.text
    assert said in response.json()["message"]
    assert "\n" not in response.json()["message"]
    key = next(iter(query))
    value = int(query[key]) if key == "limit" else query[key]
    with pytest.raises(ModelBuilderError, match=said):
        insight.errors(services, services.runs.get(run_id), **{key: value})


def test_unknown_runs_and_bad_ids_are_refused(cli: Cli, client: TestClient) -> None:
    cli("runs", "errors", "run-000000000000").user_error("run-000000000000")
    cli("runs", "report", "run-000000000000").user_error("run-000000000000")
    for path in ("errors", "data-report", "thumbnails/predictions/0"):
        assert client.get(f"/api/v1/runs/run-000000000000/{path}").status_code == 404
        assert client.get(f"/api/v1/runs/not-a-run/{path}").status_code in (400, 404, 422)


def test_a_run_without_results_has_no_errors_yet(services: Services, cli: Cli, client: TestClient,
                                                 trained: TrainedRun) -> None:
    services.workspaces.ensure_default()
    queued = services.runs.submit("default", "pets", "local", {"data": str(trained.data)}).id
    cli("runs", "errors", queued).user_error("has no results yet")
    assert client.get(f"/api/v1/runs/{queued}/errors").status_code == 409
    assert client.get(f"/api/v1/runs/{queued}/data-report").status_code == 409
    cli("runs", "report", queued).user_error("has no data report yet")


@pytest.mark.parametrize(("kind", "index", "status"), [
    ("predictions", "5", 404),  # past the last image
    ("predictions", "-1", 422),
    ("predictions", "1e3", 422),
    ("suspects", "0", 404),  # the tiny run has no suspects
    ("../predictions", "0", 404),
    ("..", "0", 404),
    ("checkpoints", "0", 422),
    ("predictions", "..%2F..%2Fdata_report.json", 404),
    ("%2e%2e", "0", 422),
])
def test_thumbnails_serve_nothing_outside_their_gallery(client: TestClient, run_id: str, kind: str, index: str,
                                                        status: int) -> None:
    response = client.get(f"/api/v1/runs/{run_id}/thumbnails/{kind}/{index}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "\n" not in response.json()["message"]


def test_a_thumbnail_is_only_ever_a_member_of_the_runs_zip(services: Services, client: TestClient,
                                                           run_id: str) -> None:
    """Even a zip whose members try to name paths outside the run gives only its own bytes by index."""
    zip_path = services.artifacts.run_dir(run_id) / THUMBNAILS_FILE
    with zipfile.ZipFile(zip_path, "a") as archive:
        archive.writestr("../outside.jpg", b"not served")
    secret = services.artifacts.run_dir(run_id).parent / "secret.jpg"
    secret.write_bytes(b"secret")
    for kind in ("predictions", "suspects"):
        for index in range(8):
            response = client.get(f"/api/v1/runs/{run_id}/thumbnails/{kind}/{index}")
            assert response.content not in (b"not served", b"secret")
            if response.status_code == 200:
                assert response.content[:3] == b"\xff\xd8\xff"
    assert json.loads(client.get(f"/api/v1/runs/{run_id}/thumbnails/x/0").text)["code"] == "invalid_input"


def test_the_portal_gallery_of_a_confusion_cell(client: TestClient, run_id: str) -> None:
    page = client.get(f"/workspaces/default/runs/{run_id}/gallery", params={"true": "cat", "predicted": "dog"})
    assert page.status_code == 200
    html = page.text
    assert html.index("cat/e.png") < html.index("cat/b.png")  # the more confidently wrong first
    assert f"/api/v1/runs/{run_id}/thumbnails/predictions/4" in html
    assert "dog/c.png" not in html
    bad = client.get(f"/workspaces/default/runs/{run_id}/gallery", params={"true": "cow"})
    assert bad.status_code == 422
    assert "has no label" in bad.text
    suspects = client.get(f"/workspaces/default/runs/{run_id}/suspects")
    assert suspects.status_code == 200
    assert "Likely wrong labels" in suspects.text
