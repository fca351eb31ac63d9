"""`modelbuilder serve` (server/model_server.py): the app in process (formats, errors, concurrent requests
forming one batch), and the real command in a subprocess serving a registered model by its alias."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.results.files import ZIP_FILE
from modelbuilder.results.runtime import PredictionEngine
from modelbuilder.sdk import registry
from modelbuilder.server.model_server import create_model_app
from tests.completed import TrainedRun, make_completed_run

from .conftest import TOKEN, free_port, server_env


@pytest.fixture(scope="module")
def engine(trained: TrainedRun) -> PredictionEngine:
    return PredictionEngine.load(trained.folder / ZIP_FILE)


@pytest.fixture
def images(trained: TrainedRun) -> list[Path]:
    return sorted(trained.data.rglob("*.png"))[:8]


def _app_client(engine: PredictionEngine, **options) -> TestClient:
    return TestClient(create_model_app(engine, "pets", "2", **{"max_batch": 8, "max_wait_s": 0.0, **options}))


def test_every_way_to_send_an_image(engine: PredictionEngine, images: list[Path]):
    expected = engine.predict(images[0])
    data = images[0].read_bytes()
    with _app_client(engine) as client:
        answers = [
            client.post("/predict", files={"image": ("a.png", data, "image/png")}),
            client.post("/predict", content=data, headers={"content-type": "image/png"}),
            client.post("/predict", content=data, headers={"content-type": "application/octet-stream"}),
            client.post("/predict", json={"image": base64.b64encode(data).decode()}),
        ]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["prediction"], body["model"], body["model_version"]) == (expected.prediction, "pets", "2")
            assert list(body["scores"].values()) == pytest.approx(expected.score, abs=1e-6)
            assert "predicted_labels" not in body  # a multi-class model's answer keeps its keys
        health = client.get("/health").json()
        assert (health["labels"], health["max_batch"]) == (engine.labels, 8)
        assert sum(health["batches"].values()) == 4
        assert "/predict" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(("kwargs", "status", "code", "words"), [
    ({"content": b"not an image", "headers": {"content-type": "image/jpeg"}}, 422, "invalid_image", "not an image"),
    ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 422, "invalid_image", "empty"),
    ({"content": b"x", "headers": {"content-type": "text/plain"}}, 422, "invalid_input", "'text/plain'"),
    ({"json": {"image": "%%%"}}, 422, "invalid_input", "base64"),
    ({"json": {"picture": "AAAA"}}, 422, "invalid_input", "base64"),
    ({"files": {"photo": ("a.png", b"x", "image/png")}}, 422, "invalid_input", "no file field named 'image'"),
])
def test_mistakes_get_one_line_and_the_fix(engine: PredictionEngine, kwargs, status, code, words):
    with _app_client(engine) as client:
        answer = client.post("/predict", **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code
    assert words in body["message"]
    assert "\n" not in body["message"]
    assert body["hint"]


def test_concurrent_requests_run_as_one_batch(engine: PredictionEngine, images: list[Path]):
    """Eight requests in flight while the model's thread has not started: they wait together, then run as
    one batch of eight, and each gets its own image's answer."""
    with _app_client(engine, start=False) as client:
        answers: dict[int, dict] = {}

        def send(i: int) -> None:
            answers[i] = client.post("/predict", content=images[i].read_bytes(),
                                     headers={"content-type": "image/png"}).json()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        batcher = client.app.state.batcher  # type: ignore[attr-defined]
        deadline = time.monotonic() + 120
        while batcher.waiting < 8:
            assert time.monotonic() < deadline, f"only {batcher.waiting} requests arrived"
            time.sleep(0.01)
        batcher.start()
        for t in threads:
            t.join(120)
        assert dict(batcher.batch_sizes) == {8: 1}
    for i, path in enumerate(images):
        assert answers[i]["prediction"] == engine.predict(path).prediction


@contextmanager
def _serve(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`python -m modelbuilder serve ARGS` over `home` on a free port, answering (reached through loopback
    whatever it binds to); always stopped."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "modelbuilder", "serve", *args, "--port", str(port)],
                                   env={**server_env(home), **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def serving(home: Path, trained: TrainedRun) -> Iterator[str]:
    """`python -m modelbuilder serve pets:production` over the test's home."""
    with Services() as services:
        registry.register(services, make_completed_run(services, trained), "pets")
        registry.register(services, make_completed_run(services, trained), "pets", alias="production")
    with _serve(home, "pets:production", "--max-batch", "4") as url:
        yield url


def test_serve_a_registered_model_by_its_alias(serving: str, engine: PredictionEngine, images: list[Path]):
    health = httpx.get(f"{serving}/health", timeout=30).json()
    assert (health["model"], health["model_version"], health["max_batch"]) == ("pets", "2", 4)
    for path in images[:3]:
        answer = httpx.post(f"{serving}/predict", files={"image": (path.name, path.read_bytes())}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == engine.predict(path).prediction


def test_serve_refuses_what_it_cannot_serve(home: Path, tmp_path: Path):
    env = server_env(home)
    for model, words in (("cats:1", "neither a run id, a registered model nor an existing file"),
                         ("pets:", "is not valid")):
        done = subprocess.run([sys.executable, "-m", "modelbuilder", "serve", model, "--port", str(free_port())],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    bad_zip = tmp_path / "MLModel.zip"
    bad_zip.write_bytes(b"PK no")
    done = subprocess.run([sys.executable, "-m", "modelbuilder", "serve", str(bad_zip)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert done.returncode == 2
    assert "not a readable zip" in done.stderr


def test_a_token_guards_predict_and_leaves_health_open(engine: PredictionEngine, images: list[Path]):
    data = images[0].read_bytes()
    with _app_client(engine, token=TOKEN) as client:
        for given in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
            refused = client.post("/predict", content=data, headers={"content-type": "image/png", **given})
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            body = refused.json()
            assert body["code"] == "unauthorized"
            assert "\n" not in body["message"]
            assert "Authorization: Bearer" in body["hint"]
        answer = client.post("/predict", content=data,
                             headers={"content-type": "image/png", "Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == engine.predict(images[0]).prediction
        health = client.get("/health")
        assert health.status_code == 200
        assert sum(health.json()["batches"].values()) == 1  # the refused requests never reached the model


@pytest.mark.parametrize(("args", "words"), [
    (("--host", "0.0.0.0"), ["without a token", "--token", "MODELBUILDER_TOKEN", "--host 127.0.0.1"]),
    (("--host", "::"), ["without a token", "--token", "--host 127.0.0.1"]),
    (("--token", "short"), ["too short", "at least"]),
])
def test_serve_refuses_a_bind_it_could_not_defend(home: Path, trained: TrainedRun, args, words):
    done = subprocess.run([sys.executable, "-m", "modelbuilder", "serve", str(trained.folder / ZIP_FILE), *args,
                           "--port", str(free_port())], env=server_env(home), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]


def test_serve_on_a_public_address_with_the_token_from_the_environment(home: Path, trained: TrainedRun,
                                                                      engine: PredictionEngine, images: list[Path]):
    data = images[0].read_bytes()
    with _serve(home, str(trained.folder / ZIP_FILE), "--host", "0.0.0.0", env={"MODELBUILDER_TOKEN": TOKEN}) as url:
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        refused = httpx.post(f"{url}/predict", content=data, headers={"content-type": "image/png"}, timeout=60)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        answer = httpx.post(f"{url}/predict", content=data, timeout=60,
                            headers={"content-type": "image/png", "Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["prediction"] == engine.predict(images[0]).prediction
