"""The REST API through FastAPI's test client: every route, its success and its errors."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modelbuilder.core.services import Services
from modelbuilder.server.api import create_app
from modelbuilder.server.deps import ServerState
from tests.imagery import labeled_image

from .conftest import TINY_RECIPE, TrainedRun


def error_of(response, status: int, code: str | None = None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The `{code, message, hint}` body of an error response (and `fix` where the hint names a step), after
    checking its status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) - {"fix"} == {"code", "message", "hint"}, body
    if "fix" in body:  # the hint again with each step's place, for a client to word them: the same steps
        assert set(body["fix"]) == {"hint", "steps"}, body
        assert body["fix"]["hint"].count("({") == len(body["fix"]["steps"]) >= 1, body
    assert body["message"], body
    assert body["hint"], body
    if code is not None:
        assert body["code"] == code, body
    return body


def png_bytes(label: str = "cat", index: int = 1) -> bytes:
    buffer = io.BytesIO()
    labeled_image(label, index).save(buffer, format="PNG")
    return buffer.getvalue()


# --- workspaces -------------------------------------------------------------------------------------------
def test_workspace_create_list_show_delete(client: TestClient) -> None:
    created = client.post("/api/v1/workspaces", json={"name": "team-a", "region": "westeurope",
                                                      "resource_group": "vision"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "team-a"
    assert created.json()["region"] == "westeurope"
    assert [ws["name"] for ws in client.get("/api/v1/workspaces").json()] == ["team-a"]
    assert client.get("/api/v1/workspaces/team-a").json()["resource_group"] == "vision"
    deleted = client.delete("/api/v1/workspaces/team-a")
    assert deleted.json() == {"deleted": "team-a", "runs_deleted": []}
    error_of(client.get("/api/v1/workspaces/team-a"), 404, "not_found")


def test_workspace_errors(client: TestClient) -> None:
    client.post("/api/v1/workspaces", json={"name": "team-a"})
    body = error_of(client.post("/api/v1/workspaces", json={"name": "team-a"}), 409, "already_exists")
    assert "team-a" in body["message"]
    body = error_of(client.post("/api/v1/workspaces", json={"name": "a!"}), 422, "invalid_input")
    assert "3 to 33 characters" in body["hint"]  # the shared validator's fix, not a regex
    error_of(client.post("/api/v1/workspaces", json={"name": "team-b", "region": "mars"}), 422, "invalid_input")
    error_of(client.post("/api/v1/workspaces", json={"name": "team-b", "storage": "/tmp"}), 422, "invalid_input")
    error_of(client.get("/api/v1/workspaces/no_such!"), 422, "invalid_input")
    error_of(client.delete("/api/v1/workspaces/missing"), 404, "not_found")


def test_workspace_with_active_runs_needs_force(client: TestClient, queued_run: str,
                                                services: Services) -> None:
    body = error_of(client.delete("/api/v1/workspaces/default"), 409, "conflict")
    assert queued_run in body["message"]
    forced = client.delete("/api/v1/workspaces/default", params={"force": "true"})
    assert forced.json()["runs_deleted"] == [queued_run]
    assert not services.artifacts.run_dir(queued_run).exists()


# --- experiments and computes ------------------------------------------------------------------------------
def test_experiments(client: TestClient, completed_run: str, queued_run: str) -> None:
    listed = client.get("/api/v1/workspaces/default/experiments").json()
    assert [(x["name"], x["runs"]) for x in listed] == [("pets", 2)]
    shown = client.get("/api/v1/workspaces/default/experiments/pets").json()
    assert (shown["runs"], shown["latest_status"]) == (2, "Queued")  # the queued run is the newer
    error_of(client.get("/api/v1/workspaces/default/experiments/nothing-here"), 404, "not_found")
    error_of(client.get("/api/v1/workspaces/default/experiments/-bad"), 422, "invalid_input")
    error_of(client.get("/api/v1/workspaces/missing/experiments"), 404, "not_found")


def test_computes_follow_the_cli_rules(client: TestClient) -> None:
    client.post("/api/v1/workspaces", json={"name": "team-a"})
    ok = client.post("/api/v1/workspaces/team-a/computes", json={"name": "cpu-1", "size": "auto"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["state"] == "Succeeded", ok.text
    # A size this host cannot meet: the compute is created, Failed, with its error (201, as the CLI leaves it).
    failed = client.post("/api/v1/workspaces/team-a/computes", json={"name": "gpu-1", "size": "Standard_NC24"})
    assert failed.status_code == 201, failed.text
    assert failed.json()["state"] == "Failed"
    assert "Standard_NC24 needs" in failed.json()["error"]
    # ...and its name stays taken, with both fixes named.
    again = error_of(client.post("/api/v1/workspaces/team-a/computes", json={"name": "gpu-1", "size": "auto"}),
                     409, "already_exists")
    assert "in state Failed" in again["message"]
    # The fix in the API's own terms: the request that takes it, not the CLI's command.
    assert "(DELETE /api/v1/workspaces/team-a/computes/gpu-1)" in again["hint"]
    assert "modelbuilder" not in again["hint"]
    assert [c["name"] for c in client.get("/api/v1/workspaces/team-a/computes").json()] == ["cpu-1", "gpu-1"]
    assert client.get("/api/v1/workspaces/team-a/computes/gpu-1").json()["state"] == "Failed"
    assert client.delete("/api/v1/workspaces/team-a/computes/gpu-1").json() == {"deleted": "gpu-1",
                                                                                "canceled_runs": []}
    error_of(client.get("/api/v1/workspaces/team-a/computes/gpu-1"), 404, "not_found")
    error_of(client.post("/api/v1/workspaces/team-a/computes", json={"name": "x", "size": "auto"}), 422)
    error_of(client.post("/api/v1/workspaces/team-a/computes", json={"name": "cpu-2", "size": "Huge"}), 422)
    error_of(client.post("/api/v1/workspaces/team-a/computes",
                         json={"name": "cpu-2", "size": "auto", "address": "ray://head:1"}), 422)
    assert "auto" in [s["name"] for s in client.get("/api/v1/sizes").json()]


def test_compute_with_active_runs_needs_force(client: TestClient, queued_run: str) -> None:
    error_of(client.delete("/api/v1/workspaces/default/computes/local"), 409, "conflict")
    forced = client.delete("/api/v1/workspaces/default/computes/local", params={"force": True})
    assert forced.json()["canceled_runs"] == [queued_run]
    assert client.get(f"/api/v1/runs/{queued_run}").json()["status"] == "Canceled"


# --- runs --------------------------------------------------------------------------------------------------
def test_submit_list_show_history_cancel(client: TestClient, trained: TrainedRun) -> None:
    body = {"experiment": "pets", "recipe": {"data": str(trained.data), **TINY_RECIPE}}
    submitted = client.post("/api/v1/runs", json=body)
    assert submitted.status_code == 201, submitted.text
    run = submitted.json()
    assert (run["status"], run["workspace"], run["compute"], run["project_name"]) == (
        "Queued", "default", "local", "Tiny")
    assert run["recipe"]["data"] == str(trained.data)
    assert run["recipe"]["epochs"] == 2
    assert run["portal_path"] == f"/workspaces/default/runs/{run['id']}"
    assert client.get(f"/api/v1/runs/{run['id']}").json()["status"] == "Queued"
    assert [r["id"] for r in client.get("/api/v1/runs").json()] == [run["id"]]
    assert [r["id"] for r in client.get("/api/v1/runs", params={"status": "Queued", "experiment": "pets",
                                                                 "compute": "local"}).json()] == [run["id"]]
    assert client.get("/api/v1/runs", params={"status": "Completed"}).json() == []
    canceled = client.post(f"/api/v1/runs/{run['id']}/cancel")
    assert canceled.json()["status"] == "Canceled"
    history = client.get(f"/api/v1/runs/{run['id']}/history").json()
    assert [h["status"] for h in history] == ["Queued", "Canceled"]
    assert all(h["reason"] and h["at"] for h in history)


def test_submit_derives_the_project_name_and_default_workspace(client: TestClient, trained: TrainedRun) -> None:
    recipe = {k: v for k, v in TINY_RECIPE.items() if k != "name"}
    run = client.post("/api/v1/runs", json={"experiment": "pets", "recipe": {"data": str(trained.data), **recipe}})
    assert run.status_code == 201, run.text
    assert run.json()["project_name"] == "Pets"  # from the data folder's name, as the CLI does


def test_submit_errors(client: TestClient, trained: TrainedRun, tmp_path: Path) -> None:
    data = str(trained.data)
    base = {"experiment": "pets", "recipe": {"data": data}}
    error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": str(tmp_path / "nothing")}}), 422,
             "bad_data")
    error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": "relative/path"}}), 422)
    error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": data + "\x00x"}}), 422)
    # only `data` may name a data asset; any other path is the server host's, absolute (not its working directory)
    body = error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": data, "validation_data": "pets"}}),
                    422)
    assert "absolute path" in body["message"]
    error_of(client.post("/api/v1/runs", json={**base, "experiment": "_bad"}), 422)
    error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": data, "epochs": 0}}), 422)
    error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": data, "lr": "NaN"}}), 422)
    error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": data, "weights": "/etc/passwd"}}), 422)
    # No field may name where results are stored, in the run or in its recipe.
    for extra in ({"artifact_root": str(tmp_path)}, {"output": str(tmp_path)}):
        error_of(client.post("/api/v1/runs", json={**base, **extra}), 422)
        error_of(client.post("/api/v1/runs", json={**base, "recipe": {"data": data, **extra}}), 422)
    error_of(client.post("/api/v1/runs", json={**base, "workspace": "missing"}), 404, "not_found")
    error_of(client.post("/api/v1/runs", json={**base, "compute": "nope"}), 404, "not_found")
    client.post("/api/v1/workspaces/default/computes", json={"name": "gpu-1", "size": "Standard_NC24"})
    body = error_of(client.post("/api/v1/runs", json={**base, "compute": "gpu-1"}), 409, "conflict")
    assert "Failed" in body["message"]
    error_of(client.post("/api/v1/runs", content=json.dumps(base), headers={"content-type": "text/plain"}), 422)
    error_of(client.post("/api/v1/runs", content=b"{not json", headers={"content-type": "application/json"}), 422)
    error_of(client.get("/api/v1/runs", params={"status": "Dancing"}), 422)
    error_of(client.get("/api/v1/runs", params={"limit": 0}), 422)


def test_idempotent_submission(client: TestClient, trained: TrainedRun) -> None:
    body = {"experiment": "pets", "recipe": {"data": str(trained.data), **TINY_RECIPE}}
    first = client.post("/api/v1/runs", json={**body, "idempotency_key": "k-1"}).json()
    again = client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "k-1"}).json()
    assert again["id"] == first["id"]
    other = {**body, "recipe": {**body["recipe"], "epochs": 3}}
    error_of(client.post("/api/v1/runs", json=other, headers={"Idempotency-Key": "k-1"}), 409, "conflict")
    error_of(client.post("/api/v1/runs", json={**body, "idempotency_key": "a"}, headers={"Idempotency-Key": "b"}),
             422)
    error_of(client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "bad key!"}), 422)


def test_run_errors(client: TestClient, completed_run: str) -> None:
    for path in ("/api/v1/runs/run-0123456789ab", "/api/v1/runs/not-a-run", "/api/v1/runs/run-0123456789ab/history",
                 "/api/v1/runs/run-0123456789ab/metrics", "/api/v1/runs/run-0123456789ab/logs",
                 "/api/v1/runs/run-0123456789ab/artifacts", "/api/v1/runs/run-0123456789ab/bundle"):
        error_of(client.get(path), 404, "not_found")
    error_of(client.post("/api/v1/runs/run-0123456789ab/cancel"), 404)
    body = error_of(client.post(f"/api/v1/runs/{completed_run}/cancel"), 409, "conflict")
    assert "Completed" in body["message"]


# --- metrics and logs --------------------------------------------------------------------------------------
def test_metrics_all_per_key_per_step(client: TestClient, completed_run: str, trained: TrainedRun) -> None:
    history = trained.metrics["history"]
    points = client.get(f"/api/v1/runs/{completed_run}/metrics").json()
    assert {p["key"] for p in points} >= {"train_loss", "val_loss", "train_accuracy", "val_accuracy"}
    series = client.get(f"/api/v1/runs/{completed_run}/metrics/val_accuracy").json()
    assert [p["step"] for p in series] == [1, 2]
    assert [p["value"] for p in series] == pytest.approx([h["val_accuracy"] for h in history])
    step = client.get(f"/api/v1/runs/{completed_run}/steps/2/metrics").json()
    assert step["step"] == 2
    assert step["values"]["val_loss"] == pytest.approx(history[1]["val_loss"])
    filtered = client.get(f"/api/v1/runs/{completed_run}/metrics", params={"key": "val_loss", "step": 1}).json()
    assert [(p["key"], p["step"]) for p in filtered] == [("val_loss", 1)]
    newer = client.get(f"/api/v1/runs/{completed_run}/metrics", params={"key": "val_loss", "after_step": 1}).json()
    assert [(p["key"], p["step"]) for p in newer] == [("val_loss", 2)]  # what a follower has not seen yet
    assert client.get(f"/api/v1/runs/{completed_run}/metrics/nothing").json() == []
    error_of(client.get(f"/api/v1/runs/{completed_run}/steps/-1/metrics"), 422)


def test_log_tail(client: TestClient, completed_run: str) -> None:
    tail = client.get(f"/api/v1/runs/{completed_run}/logs").json()
    assert [line["message"] for line in tail["lines"]] == ["Running: training from the start", "a <b>warning</b>"]
    assert tail["next_seq"] == 2
    assert tail["terminal"] is True
    assert tail["status"] == "Completed"
    newer = client.get(f"/api/v1/runs/{completed_run}/logs", params={"after_seq": 1, "limit": 5}).json()
    assert [line["seq"] for line in newer["lines"]] == [2]
    assert client.get(f"/api/v1/runs/{completed_run}/logs", params={"after_seq": 2}).json()["next_seq"] == 2
    error_of(client.get(f"/api/v1/runs/{completed_run}/logs", params={"limit": 0}), 422)


def sse_events(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_log_follow_streams_until_the_run_ends(client: TestClient, completed_run: str) -> None:
    with client.stream("GET", f"/api/v1/runs/{completed_run}/logs/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())
    assert [kind for kind, _ in events] == ["log", "log", "status", "end"]
    assert events[1][1]["message"] == "a <b>warning</b>"
    assert events[-1][1]["status"] == "Completed"
    resumed = client.get(f"/api/v1/runs/{completed_run}/logs/stream", headers={"Last-Event-ID": "1"})
    assert [kind for kind, _ in sse_events(resumed.text)] == ["log", "status", "end"]


def test_log_follow_ends_when_a_waiting_run_is_canceled(client: TestClient, queued_run: str,
                                                        services: Services) -> None:
    received = []
    with client.stream("GET", f"/api/v1/runs/{queued_run}/logs/stream") as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line.removeprefix("data: ")))
                if len(received) == 1:  # the stream is live: now the run changes under it
                    services.runs.request_cancel(queued_run)
    assert [event["status"] for event in received] == ["Queued", "Canceled", "Canceled"]  # ..., then the end
    assert received[-1]["reason"] == "canceled by the user"


# --- artifacts, bundle, predict ----------------------------------------------------------------------------
def test_artifacts_list_and_download(client: TestClient, completed_run: str, trained: TrainedRun) -> None:
    listed = {a["path"]: a for a in client.get(f"/api/v1/runs/{completed_run}/artifacts").json()}
    assert {"bestModel.onnx", "bestModelMap.json", "MLModel.zip", "metrics.json", "Tiny.ConsoleApp/main.py"} <= set(
        listed)
    assert listed["bestModel.onnx"]["url"] == f"/api/v1/runs/{completed_run}/artifacts/bestModel.onnx"
    onnx = client.get(listed["bestModel.onnx"]["url"])
    assert onnx.content == (trained.folder / "bestModel.onnx").read_bytes()
    assert onnx.headers["content-disposition"].startswith("attachment")
    assert onnx.headers["x-content-type-options"] == "nosniff"
    labels = client.get(f"/api/v1/runs/{completed_run}/artifacts/bestModelMap.json")
    assert labels.json() == ["cat", "dog"]
    assert labels.headers["content-type"] == "application/json"
    main = client.get(f"/api/v1/runs/{completed_run}/artifacts/Tiny.ConsoleApp/main.py")
    assert main.headers["content-type"].startswith("text/plain")
    assert b"import" in main.content
    error_of(client.get(f"/api/v1/runs/{completed_run}/artifacts/nothing.bin"), 404, "not_found")
    error_of(client.get(f"/api/v1/runs/{completed_run}/artifacts/checkpoints"), 404, "not_found")  # a folder


def test_bundle_holds_both_projects_and_the_three_assets(client: TestClient, completed_run: str,
                                                         trained: TrainedRun) -> None:
    response = client.get(f"/api/v1/runs/{completed_run}/bundle")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert f'filename="Tiny-{completed_run}.zip"' in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        members = set(archive.namelist())
        assert archive.read("MLModel.zip") == (trained.folder / "MLModel.zip").read_bytes()
    assert {"bestModel.onnx", "bestModelMap.json", "MLModel.zip", "Tiny.ConsoleApp/main.py",
            "Tiny.WebApi/main.py", "Tiny.WebApi/Dockerfile"} <= members
    assert any(m.startswith("Tiny.Model/") for m in members)
    assert not any(m.startswith(("checkpoints/", "logs/")) or "__pycache__" in m for m in members)


def test_bundle_and_predict_wait_for_results(client: TestClient, queued_run: str) -> None:
    body = error_of(client.get(f"/api/v1/runs/{queued_run}/bundle"), 409, "conflict")
    assert "Queued" in body["message"]
    error_of(client.post(f"/api/v1/runs/{queued_run}/predict", files={"file": ("a.png", png_bytes())}), 409)


def test_predict(client: TestClient, completed_run: str, state: ServerState) -> None:
    for label in ("cat", "dog"):
        result = client.post(f"/api/v1/runs/{completed_run}/predict",
                             files={"file": ("x.png", png_bytes(label, 3), "image/png")})
        assert result.status_code == 200, result.text
        body = result.json()
        assert body["labels"] == ["cat", "dog"]
        assert body["prediction"] == body["labels"][body["score"].index(max(body["score"]))]
        assert sum(body["score"]) == pytest.approx(1.0)
        assert body["scores"] == dict(zip(body["labels"], body["score"], strict=True))
        assert set(body) == {"prediction", "score", "labels", "scores"}  # multi-class: no predicted_labels
    assert len(state.engines._engines) == 1  # one engine per run, loaded once


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"this is not an image", "not an image"),
    (png_bytes()[:60], "truncated"),
])
def test_predict_bad_images_are_422_with_the_reason(client: TestClient, completed_run: str, content: bytes,
                                                    reason: str) -> None:
    response = client.post(f"/api/v1/runs/{completed_run}/predict", files={"file": ("x.png", content)})
    body = error_of(response, 422, "invalid_image")
    assert reason in body["message"]


def test_predict_refuses_decompression_bombs(client: TestClient, completed_run: str) -> None:
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")  # ~50 KB that decodes to 400 M pixels
    body = error_of(client.post(f"/api/v1/runs/{completed_run}/predict", files={"file": ("b.png", buffer.getvalue())}),
                    422, "invalid_image")
    assert "decompression bomb" in body["message"]


def test_predict_needs_a_file(client: TestClient, completed_run: str) -> None:
    error_of(client.post(f"/api/v1/runs/{completed_run}/predict"), 422, "invalid_input")
    error_of(client.post(f"/api/v1/runs/{completed_run}/predict", json={"file": "/etc/passwd"}), 422)


# --- limits and failures ---------------------------------------------------------------------------------
def test_oversized_upload_is_413(client: TestClient, completed_run: str) -> None:
    big = b"\x89PNG" + bytes(21 << 20)
    body = error_of(client.post(f"/api/v1/runs/{completed_run}/predict", files={"file": ("big.png", big)}), 413,
                    "payload_too_large")
    assert "20 MiB" in body["message"]


def test_oversized_json_body_is_413_even_without_a_length(client: TestClient) -> None:
    big = json.dumps({"name": "team-a", "region": "local", "resource_group": "x" * (2 << 20)}).encode()
    error_of(client.post("/api/v1/workspaces", content=big, headers={"content-type": "application/json"}), 413)

    def chunked():  # no Content-Length: the limit counts what really arrives
        for start in range(0, len(big), 1 << 16):
            yield big[start:start + (1 << 16)]

    error_of(client.post("/api/v1/workspaces", content=chunked(), headers={"content-type": "application/json"}), 413)
    assert client.get("/api/v1/workspaces").json() == []


def test_unexpected_errors_are_500_without_details(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(start_agents=False)

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret detail /srv/private")

    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        response = test_client.get("/api/v1/boom")
    error_of(response, 500, "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "secret detail" in caplog.text  # ...but the server's log has it


def test_unknown_routes_and_methods(client: TestClient) -> None:
    error_of(client.get("/api/v1/nothing"), 404, "not_found")
    error_of(client.put("/api/v1/workspaces"), 405, "method_not_allowed")
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")


def test_openapi_and_docs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/v1/workspaces", "/api/v1/runs", "/api/v1/runs/{run_id}/bundle", "/api/v1/runs/{run_id}/predict",
            "/api/v1/runs/{run_id}/logs/stream", "/api/v1/runs/{run_id}/artifacts/{relpath}"} <= paths
    assert not any(p.startswith("/workspaces") for p in paths)  # pages stay out of the API schema
    assert client.get("/docs").status_code == 200
