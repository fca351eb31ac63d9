"""The generated <Name>.WebApi, installed into a fresh virtual environment with its model package and
served on loopback: real uploads, base64 JSON, health, the OpenAPI docs, and one-line errors.

The environment is made with `python -m venv` (no site packages of this one) and filled by pip from
the sources pip is configured with; it holds neither modelbuilder nor torch.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from modelbuilder.results import runtime
from modelbuilder.results.codegen import GeneratedProjects, generate_projects

from .helpers import LABELS

NAME = "PetClassifier"
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Service:
    url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory, mlmodel_zip: Path, dataset) -> GeneratedProjects:
    return generate_projects(NAME, tmp_path_factory.mktemp("generated"), mlmodel_zip, dataset[0][0],
                             version="3")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, projects: GeneratedProjects) -> tuple[Path, Path]:
    """A fresh venv with <Name>.Model installed (not editable) and the WebApi's requirements; returns its
    python and a copy of the WebApi in a folder with no <Name>.Model beside it."""
    root = tmp_path_factory.mktemp("webapi-env")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300, env=_child_env())
    python = root / "venv" / "bin" / "python"
    model = shutil.copytree(projects.model, root / "build" / projects.model.name)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(model),
                           "-r", str(projects.web_api / "requirements.txt")],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=_child_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    alone = shutil.copytree(projects.web_api, root / "alone" / projects.web_api.name)
    shutil.rmtree(root / "build")  # the installed package is all that is left of the model
    return python, alone


@pytest.fixture(scope="module")
def service(installed: tuple[Path, Path]) -> Iterator[Service]:
    """`python main.py --port N` from the venv, always ended, however the tests go."""
    python, web_api = installed
    port, log = _free_port(), web_api / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(python), "main.py", "--host", "127.0.0.1", "--port", str(port)],
                                   cwd=web_api, env=_child_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                httpx.get(f"{url}/health", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the Web API did not start: " + log.read_text()[-3000:]
                time.sleep(0.2)
        yield Service(url, log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_the_venv_has_no_modelbuilder_and_no_torch(installed: tuple[Path, Path]):
    python, _ = installed
    probe = "import importlib.util as u; print([m for m in ('modelbuilder', 'torch') if u.find_spec(m)])"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, env=_child_env())
    assert done.stdout.strip() == "[]", done.stderr


def test_upload_of_a_real_image(service: Service, engine: runtime.PredictionEngine, dataset):
    for path, _ in (dataset[1], dataset[6], dataset[11]):  # a PNG and JPEGs of three labels
        with open(path, "rb") as image:
            answer = httpx.post(f"{service.url}/predict", files={"image": (path.name, image, "image/png")},
                                timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = engine.predict(str(path))
        assert body["prediction"] == expected.prediction
        assert list(body["scores"]) == LABELS
        assert list(body["scores"].values()) == pytest.approx(expected.score, abs=1e-5)
        assert body["model"] == NAME
        assert body["model_version"] == "3"


def test_base64_json_of_a_real_image(service: Service, engine: runtime.PredictionEngine, dataset):
    path = dataset[9][0]
    payload = {"image": base64.b64encode(path.read_bytes()).decode()}
    answer = httpx.post(f"{service.url}/predict", json=payload, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] == engine.predict(str(path)).prediction


def test_health_and_docs(service: Service):
    health = httpx.get(f"{service.url}/health", timeout=30).json()
    assert health == {"status": "ok", "model": NAME, "model_version": "3", "labels": LABELS}
    schema = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "/health" in schema["paths"]
    assert httpx.get(f"{service.url}/docs", timeout=30).status_code == 200


def _one_line_problem(answer: httpx.Response, status: int, code: str, words: str) -> None:
    assert answer.status_code == status, answer.text
    problem = answer.json()
    assert problem["code"] == code
    assert words in problem["message"]
    assert "\n" not in problem["message"]
    assert problem["hint"]


def test_bad_requests_get_one_line_and_the_fix(service: Service):
    url = f"{service.url}/predict"
    _one_line_problem(httpx.post(url, files={"image": ("a.jpg", b"this is not an image", "image/jpeg")}, timeout=30),
                      422, "invalid_image", "not an image")
    _one_line_problem(httpx.post(url, files={"image": ("a.jpg", b"", "image/jpeg")}, timeout=30),
                      422, "invalid_image", "empty")
    _one_line_problem(httpx.post(url, files={"photo": ("a.jpg", b"x", "image/jpeg")}, timeout=30),
                      422, "no_image", "no file field named 'image'")
    _one_line_problem(httpx.post(url, json={"image": "not base64 !"}, timeout=30), 422, "bad_base64", "base64")
    _one_line_problem(httpx.post(url, json={"picture": "AAAA"}, timeout=30), 422, "no_image", "'image'")
    _one_line_problem(httpx.post(url, content=b"raw", headers={"content-type": "text/plain"}, timeout=30),
                      415, "unsupported_media_type", "text/plain")


def test_a_truncated_upload_is_refused_and_the_service_goes_on(service: Service, dataset):
    buffer = io.BytesIO()
    Image.open(dataset[2][0]).save(buffer, format="JPEG", quality=90)
    whole = buffer.getvalue()
    _one_line_problem(httpx.post(f"{service.url}/predict", files={"image": ("t.jpg", whole[: len(whole) // 2])},
                                 timeout=30), 422, "invalid_image", "truncated")
    assert httpx.post(f"{service.url}/predict", files={"image": ("w.jpg", whole)}, timeout=30).status_code == 200
