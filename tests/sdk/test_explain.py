"""Explanations of a prediction through the application layer (`sdk.explain`): heatmaps of the image's size
from the SDK (`Run.explain`, `Model.explain`), the CLI (`modelbuilder predict MODEL IMAGE --explain out/`) and
the REST API (`POST /runs/{id}/explain`), and the same one-line refusals of bad input from each.

The run is the session's real tiny training (weights none); the images are real files written by Pillow,
of another size and shape than the 32-px squares it trained on, so the heatmap is placed back on the image.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modelbuilder.core.services import Services
from modelbuilder.errors import ModelBuilderError
from modelbuilder.results.files import BEST_CHECKPOINT, CHECKPOINT_DIR, RESULT_MARKER, ZIP_FILE
from modelbuilder.results.runtime import PipelineError, PredictionEngine
from modelbuilder.sdk import Model, Workspace
from modelbuilder.sdk.explain import overlay_name
from modelbuilder.server.middleware import JSON_LIMIT
from modelbuilder.training.explain import METHODS
from tests.cli.driver import Cli
from tests.completed import TrainedRun, make_completed_run
from tests.imagery import labeled_image

SIZE = (64, 48)  # width, height: not square, not the 32 px the model sees


@pytest.fixture
def run_id(services: Services, trained: TrainedRun) -> str:
    return make_completed_run(services, trained)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A dog, as the run's dogs look, at 64 x 48."""
    path = tmp_path / "photo.png"
    labeled_image("dog", 3, size=64).crop((0, 8, 64, 56)).save(path)
    return path


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def test_heatmaps_have_the_images_size_and_differ_between_labels(services: Services, run_id: str,
                                                                 photo: Path) -> None:
    run = Workspace.get(services=services).run(run_id)
    explained = run.explain(photo)
    engine = PredictionEngine.load(services.artifacts.run_dir(run_id) / ZIP_FILE)
    assert explained.score == pytest.approx(engine.predict(photo).score, abs=1e-4)  # the exported model's scores
    assert explained.label == explained.prediction == engine.predict(photo).prediction
    assert explained.size == SIZE
    assert explained.heatmaps["integrated_gradients"].max() > 0.5  # scaled: the strongest evidence near 1
    other = next(label for label in explained.labels if label != explained.label)
    for_other = run.explain(photo, label=other)
    assert for_other.label == other
    assert for_other.score == explained.score
    for method in METHODS:
        heat = explained.heatmaps[method]
        assert heat.shape == (SIZE[1], SIZE[0])
        assert heat.dtype == np.float32
        assert heat.min() >= 0
        assert heat.max() <= 1
        # The model sees the center 41.5 x 41.5 of the 48-px square: the sides it never saw hold no heat.
        assert heat[:, :8].max() == 0
        assert heat[:, -8:].max() == 0
        assert not np.allclose(heat, for_other.heatmaps[method], atol=1e-3), method
        assert _png_size(explained.overlays[method]) == SIZE
        assert explained.overlays[method] != for_other.overlays[method]


def test_the_cli_writes_one_overlay_per_method(cli: Cli, run_id: str, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("predict", run_id, str(photo), "--explain", str(out), "--format", "json").ok()
    prediction = result.json()["prediction"]
    assert f"Explained '{prediction}' (the prediction)" in result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(overlay_name("photo", m) for m in METHODS)
    assert all(_png_size((out / name).read_bytes()) == SIZE for name in written)
    first = {name: (out / name).read_bytes() for name in written}
    other = "cat" if prediction == "dog" else "dog"
    again = cli("predict", run_id, str(photo), "--explain", str(out), "--label", other).ok()
    assert f"Explained '{other}':" in again.stderr
    assert all((out / name).read_bytes() != first[name] for name in written)


def test_a_registered_model_is_explained_by_its_run(services: Services, run_id: str, photo: Path) -> None:
    Model.register(run_id, "pets", services=services)
    explained = Model("pets:1", services=services).explain(photo)
    assert explained.size == SIZE
    assert set(explained.overlays) == set(METHODS)


def test_the_api_returns_the_scores_and_the_overlays(client: TestClient, run_id: str, photo: Path) -> None:
    upload = {"file": ("photo.png", photo.read_bytes(), "image/png")}
    body = client.post(f"/api/v1/runs/{run_id}/explain", files=upload).json()
    assert body["label"] == body["prediction"]
    assert sum(body["scores"].values()) == pytest.approx(1.0)
    assert (body["width"], body["height"]) == SIZE
    assert sorted(body["overlays"]) == sorted(METHODS)
    for png in body["overlays"].values():
        assert _png_size(base64.b64decode(png)) == SIZE
    other = next(label for label in body["labels"] if label != body["label"])
    asked = client.post(f"/api/v1/runs/{run_id}/explain", params={"label": other}, files=upload).json()
    assert asked["label"] == other
    assert asked["overlays"]["gradcam"] != body["overlays"]["gradcam"]


# --- bad input: one line with the fix, from every face ---------------------------------------------


def test_an_unknown_label_is_refused(services: Services, cli: Cli, client: TestClient, run_id: str,
                                     photo: Path, tmp_path: Path) -> None:
    line = cli("predict", run_id, str(photo), "--explain", str(tmp_path / "out"), "--label", "cow")
    line.user_error("no label 'cow'", "use one of: cat, dog")
    assert not (tmp_path / "out").exists()
    response = client.post(f"/api/v1/runs/{run_id}/explain", params={"label": "cow"},
                           files={"file": ("photo.png", photo.read_bytes(), "image/png")})
    assert response.status_code == 422
    assert "no label 'cow'" in response.json()["message"]
    with pytest.raises(ModelBuilderError, match="no label 'cow'"):
        Workspace.get(services=services).run(run_id).explain(photo, label="cow")


def test_a_file_that_is_not_an_image_is_refused(cli: Cli, client: TestClient, run_id: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not an image\n")
    cli("predict", run_id, str(notes), "--explain", str(tmp_path / "out")).user_error("Cannot read image")
    response = client.post(f"/api/v1/runs/{run_id}/explain", files={"file": ("notes.jpg", notes.read_bytes(),
                                                                             "image/jpeg")})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_image"
    assert "\n" not in response.json()["message"]
    assert response.json()["hint"]


def test_an_mlmodel_zip_alone_cannot_be_explained(services: Services, cli: Cli, run_id: str, photo: Path,
                                                  tmp_path: Path) -> None:
    alone = tmp_path / "model" / ZIP_FILE
    alone.parent.mkdir()
    shutil.copy(services.artifacts.run_dir(run_id) / ZIP_FILE, alone)
    cli("predict", str(alone), str(photo)).ok()  # it predicts: it just has no checkpoint to explain with
    cli("predict", str(alone), str(photo), "--explain", str(tmp_path / "out")).user_error(
        "cannot be explained", "checkpoints/best.pt", "modelbuilder runs list")
    with pytest.raises(ModelBuilderError, match="cannot be explained"):
        Model(str(alone), services=services).explain(photo)


def test_a_run_that_has_not_finished_is_refused(services: Services, cli: Cli, client: TestClient,
                                                trained: TrainedRun, photo: Path, tmp_path: Path) -> None:
    services.workspaces.ensure_default()
    queued = services.runs.submit("default", "pets", "local", {"data": str(trained.data)}).id
    cli("predict", queued, str(photo), "--explain", str(tmp_path / "out")).user_error("has no results yet")
    response = client.post(f"/api/v1/runs/{queued}/explain", files={"file": ("photo.png", photo.read_bytes(),
                                                                              "image/png")})
    assert response.status_code == 409
    unfinished = tmp_path / "unfinished"  # a run's folder mid-training: checkpoints, no MLModel.zip yet
    shutil.copytree(trained.folder / CHECKPOINT_DIR, unfinished / CHECKPOINT_DIR)
    assert not (unfinished / RESULT_MARKER).exists()
    cli("predict", str(unfinished), str(photo), "--explain", str(tmp_path / "out")).user_error(
        "has not finished", "wait until the run is Completed")


def test_the_cli_options_are_checked(cli: Cli, run_id: str, photo: Path, tmp_path: Path) -> None:
    cli("predict", run_id, str(photo), "--label", "cat").user_error("--label", "--explain")
    cli("predict", run_id, str(photo.parent), "--explain", str(tmp_path / "out")).user_error("explains one image")
    cli("predict", run_id, str(tmp_path / "missing.png"), "--explain", str(tmp_path / "out")).user_error(
        "missing.png")
    a_file = tmp_path / "taken"
    a_file.write_text("")
    cli("predict", run_id, str(photo), "--explain", str(a_file)).user_error("is a file, not a folder")


def test_the_runtime_errors_stay_its_own(services: Services, run_id: str) -> None:
    """The SDK raises the runtime's own error for an unreadable image, as `Model.predict` does."""
    with pytest.raises(PipelineError, match="Cannot read image"):
        Workspace.get(services=services).run(run_id).explain(b"not an image")


def test_an_upload_over_the_json_limit_is_explained(client: TestClient, run_id: str) -> None:
    """/explain takes images as large as /predict does (the body limit knows both paths)."""
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > JSON_LIMIT
    response = client.post(f"/api/v1/runs/{run_id}/explain", files={"file": ("noise.png", buffer.getvalue(),
                                                                              "image/png")})
    assert response.status_code == 200, response.text[:300]
    assert (response.json()["width"], response.json()["height"]) == (700, 700)


def test_a_run_whose_checkpoint_is_gone_says_so(services: Services, client: TestClient, run_id: str,
                                                photo: Path) -> None:
    (services.artifacts.run_dir(run_id) / BEST_CHECKPOINT).unlink()
    response = client.post(f"/api/v1/runs/{run_id}/explain", files={"file": ("photo.png", photo.read_bytes(),
                                                                              "image/png")})
    assert response.status_code == 404
    body = response.json()
    assert "cannot be explained" in body["message"]
    assert "GET /api/v1/runs?workspace=NAME" in body["hint"]
    assert client.post(f"/api/v1/runs/{run_id}/predict", files={"file": ("photo.png", photo.read_bytes(),
                                                                          "image/png")}).status_code == 200
    with pytest.raises(ModelBuilderError, match="cannot be explained"):
        Workspace.get(services=services).run(run_id).explain(photo)


def test_a_damaged_checkpoint_is_one_line_with_the_fix(services: Services, cli: Cli, run_id: str, photo: Path,
                                                       tmp_path: Path) -> None:
    (services.artifacts.run_dir(run_id) / BEST_CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelBuilderError, match="best checkpoint cannot explain its model") as error:
        Workspace.get(services=services).run(run_id).explain(photo)
    assert "\n" not in str(error.value)
    assert "train the run again" in error.value.hint
