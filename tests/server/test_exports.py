"""`POST /api/v1/runs/{run_id}/export` (routers/exports.py): the int8 export the CLI and the SDK make."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_a_finished_run_exports_int8_and_its_files_download(client: TestClient, completed_run: str) -> None:
    response = client.post(f"/api/v1/runs/{completed_run}/export", json={"calibration_images": 50})
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["quantize"] == "int8"
    assert done["weight_bits"] in (7, 8)
    assert 0 < done["calibration_images"] <= min(50, done["images"])
    assert 0.0 <= done["int8_accuracy"] <= 1.0
    assert done["calibration"] in ("averaged", "extremes")
    assert [a["path"] for a in done["artifacts"]] == ["bestModel.int8.onnx", "MLModel.int8.zip"]
    assert all(a["url"].startswith(f"/api/v1/runs/{completed_run}/artifacts/") for a in done["artifacts"])
    listed = {a["path"] for a in client.get(f"/api/v1/runs/{completed_run}/artifacts").json()}
    assert {"bestModel.int8.onnx", "MLModel.int8.zip"} <= listed  # recorded with the run's artifacts
    package = client.get(done["artifacts"][1]["url"])
    assert package.status_code == 200
    assert package.content[:2] == b"PK"


def test_export_refusals_are_errors_with_the_fix(client: TestClient, completed_run: str, queued_run: str) -> None:
    waiting = client.post(f"/api/v1/runs/{queued_run}/export", json={})
    assert waiting.status_code == 409
    assert waiting.json()["code"] == "conflict"
    assert f"(GET /api/v1/runs/{queued_run}/events)" in waiting.json()["hint"]  # the API's own words
    assert client.post(f"/api/v1/runs/{completed_run}/export", json={"quantize": "int4"}).status_code == 422
    assert client.post("/api/v1/runs/run-000000000000/export", json={}).status_code == 404
