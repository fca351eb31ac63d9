"""Hostile requests: artifact and bundle downloads with every path trick, uploads with hostile names.

Each request goes to the ASGI app exactly as a server hands it over (the raw path, percent-decoded once,
as uvicorn does), because HTTP clients normalise '../' away before sending. A secret file is planted
outside the run's folder, beside it and in another run's folder; no answer may ever contain it.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services

SECRET = f"TOP-SECRET-{secrets.token_hex(8)}".encode()

HOSTILE = [
    "../secret.txt", "../../secret.txt", "../../../secret.txt", "..%2fsecret.txt", "..%2F..%2Fsecret.txt",
    "%2e%2e/secret.txt", "%2e%2e%2fsecret.txt", "%2E%2E%2F%2E%2E%2Fsecret.txt", ".%2e/secret.txt",
    "%252e%252e%252fsecret.txt", "..%252fsecret.txt", "%25%32%65%25%32%65/secret.txt",
    "..\\secret.txt", "..%5csecret.txt", "..%5c..%5csecret.txt", "....//secret.txt", "..;/secret.txt",
    "/secret.txt", "/etc/passwd", "%2fetc%2fpasswd", "//etc/passwd", "C:\\x", "C:%5cWindows%5cwin.ini", "C:/x",
    "%23", "x%23/../../secret.txt", "%23/../../secret.txt", "bestModel.onnx%00.png", "%00", "..%00/secret.txt",
    "%c0%ae%c0%ae/secret.txt", "bestModel.onnx/../../secret.txt", "./bestModel.onnx", "checkpoints/../../secret.txt",
    "link-out", "link-dir/secret.txt", "link-dir/../secret.txt", "link-run/secret.txt", ".tmp-partial",
    "?x=../secret.txt", "",
]


@pytest.fixture
def planted(services: Services, completed_run: str, home: Path) -> str:
    """Secrets outside the run's folder, and links inside it that point at them."""
    run_dir = services.artifacts.run_dir(completed_run)
    other = services.artifacts.run_dir("run-0000000000ff")
    other.mkdir(parents=True)
    for folder in (home, services.artifacts.root, other, home.parent):
        (folder / "secret.txt").write_bytes(SECRET)
    (run_dir / "link-out").symlink_to(home / "secret.txt")
    (run_dir / "link-dir").symlink_to(home)
    (run_dir / "link-run").symlink_to(other)
    (run_dir / ".tmp-partial").write_bytes(SECRET)
    (run_dir / "Tiny.ConsoleApp" / "leak.txt").symlink_to(home / "secret.txt")
    (run_dir / "Tiny.Model" / "leak-dir").symlink_to(home)
    return completed_run


def raw_get(app: FastAPI, raw: bytes) -> tuple[int, bytes]:
    """GET `raw` (path and query, bytes as sent on the wire) through the ASGI app, as uvicorn would."""
    raw_path, _, query = raw.partition(b"?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path, "query_string": query,
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8765")], "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8765),
    }
    status, body = 0, b""

    async def run() -> None:
        sent_request, done = False, asyncio.Event()

        async def receive() -> dict[str, object]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()  # the client stays until the whole answer arrived, then hangs up
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")  # type: ignore[operator]
                if not message.get("more_body", False):
                    done.set()

        await app(scope, receive, send)

    asyncio.run(run())
    return status, body


def test_artifact_download_never_leaves_the_run_folder(app: FastAPI, planted: str) -> None:
    answers = {trick: raw_get(app, f"/api/v1/runs/{planted}/artifacts/{trick}".encode()) for trick in HOSTILE}
    wrong = {trick: (status, body[:120]) for trick, (status, body) in answers.items() if status not in (400, 404)}
    assert not wrong, wrong
    assert not [trick for trick, (_, body) in answers.items() if SECRET in body]
    refused = [trick for trick, (status, _) in answers.items() if status == 400]
    assert "../secret.txt" in refused
    assert "link-out" in refused
    assert "%252e%252e%252fsecret.txt" in refused


RUN_TRICKS = ["..", "..%2f..%2fsecret.txt", "%2e%2e", "run-0000000000ff%2f..", "run-0000000000ff%00",
              "RUN-0000000000FF", "run-0000000000ff.", "run-0000000000ff%2fsecret.txt", "..%5c..", "%2fetc"]


def test_run_ids_are_checked_before_any_path_is_made(app: FastAPI, planted: str) -> None:
    for run_part in RUN_TRICKS:
        for tail in ("artifacts/secret.txt", "bundle", "logs", "artifacts"):
            status, body = raw_get(app, f"/api/v1/runs/{run_part}/{tail}".encode())
            assert status in (400, 404), (run_part, tail, status)
            assert SECRET not in body


def test_links_are_not_listed_and_not_bundled(client: TestClient, planted: str) -> None:
    listed = [a["path"] for a in client.get(f"/api/v1/runs/{planted}/artifacts").json()]
    assert not any("link" in path or "leak" in path or ".tmp-" in path for path in listed)
    response = client.get(f"/api/v1/runs/{planted}/bundle")
    assert response.status_code == 200
    assert SECRET not in response.content
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert not any("leak" in name for name in archive.namelist())
        assert all(SECRET not in archive.read(name) for name in archive.namelist())


def test_the_real_files_still_download(app: FastAPI, planted: str) -> None:
    """The same route serves a plain path: the refusals above are not a route that never works."""
    status, body = raw_get(app, f"/api/v1/runs/{planted}/artifacts/bestModelMap.json".encode())
    assert status == 200
    assert json.loads(body) == ["cat", "dog"]
    status, _ = raw_get(app, f"/api/v1/runs/{planted}/artifacts/Tiny.ConsoleApp/main.py".encode())
    assert status == 200


def test_upload_names_are_never_used_as_paths(client: TestClient, planted: str, home: Path) -> None:
    before = set(home.parent.rglob("*"))
    for filename in ("../../evil.png", "/tmp/evil.png", "..\\..\\evil.png", "C:\\evil.png", "evil\x00.png",
                     "%2e%2e%2fevil.png"):
        response = client.post(f"/api/v1/runs/{planted}/predict", files={"file": (filename, b"not an image")})
        assert response.status_code == 422, (filename, response.text)
    assert set(home.parent.rglob("*")) == before  # nothing written anywhere: the upload is decoded in memory
    assert not Path("/tmp/evil.png").exists()


def test_no_request_field_names_a_storage_location(client: TestClient) -> None:
    """Every request body field is checked against the schema: none names a storage location."""
    schema = client.get("/openapi.json").json()
    fields: set[str] = set()
    for name, component in schema["components"]["schemas"].items():
        if name.endswith("Create") or name.startswith("Body_"):  # what clients send
            fields |= set(component.get("properties", {}))
    assert {"data", "name", "experiment", "file"} <= fields  # the scan sees the request bodies
    assert not fields & {"artifact_root", "artifacts", "output", "output_dir", "path", "root", "folder", "dest",
                         "destination", "store", "storage", "db_url", "home"}
