"""server/middleware.py, each layer on its own around a two-route app: the body limit, the host check, the
origin check, the security headers and the last-resort 500."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from modelbuilder.server import middleware


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("a page")


async def _broken(request: Request) -> PlainTextResponse:
    raise RuntimeError("a bug of ours")


def _client(layer: Any, host: str = "127.0.0.1", **options: Any) -> TestClient:
    app = Starlette(routes=[Route("/api/v1/echo", _echo, methods=["GET", "POST"]),
                            Route("/api/v1/runs/{run}/predict", _echo, methods=["POST"]),
                            Route("/api/v1/workspaces/{ws}/models/{name}/versions/{which}/predict", _echo,
                                  methods=["POST"]),
                            Route("/workspaces", _page), Route("/broken", _broken)])
    app.add_middleware(layer, **options)
    return TestClient(app, base_url=f"http://{host}", raise_server_exceptions=False)


def test_bodies_over_the_limit_are_413_before_the_app_reads_them() -> None:
    client = _client(middleware.BodyLimit, json_limit=10, upload_limit=20)
    assert client.post("/api/v1/echo", content=b"x" * 10).json() == {"received": 10}
    refused = client.post("/api/v1/echo", content=b"x" * 11)
    assert refused.status_code == 413
    assert refused.json()["code"] == "payload_too_large"
    # an image upload has a limit of its own (plus room for the multipart framing)
    assert client.post("/api/v1/runs/r/predict", content=b"x" * 30).json() == {"received": 30}
    # and so has a registered model's version (by number or alias), nothing else under models/
    assert client.post("/api/v1/workspaces/w/models/pets/versions/production/predict",
                       content=b"x" * 30).json() == {"received": 30}
    assert client.post("/api/v1/workspaces/w/models/pets/versions/2/predict/x", content=b"x" * 30).status_code == 413


def test_without_a_token_only_loopback_names_are_answered() -> None:
    assert _client(middleware.HostCheck).get("/workspaces").status_code == 200
    rebinding = _client(middleware.HostCheck, host="evil.example").get("/workspaces")
    assert rebinding.status_code == 400
    assert rebinding.json()["code"] == "bad_host"
    assert _client(middleware.HostCheck, host="testserver", trusted=("testserver",)).get("/workspaces").status_code \
        == 200


def test_changes_from_another_site_s_page_are_refused() -> None:
    client = _client(middleware.OriginCheck)
    assert client.post("/api/v1/echo", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/v1/echo", headers={"Origin": "http://127.0.0.1"}).status_code == 200
    assert client.post("/api/v1/echo").status_code == 200  # an API client sends no Origin
    assert client.get("/api/v1/echo", headers={"Origin": "http://evil.example"}).status_code == 200  # reads are safe


def test_pages_get_a_strict_policy_and_everything_no_sniffing() -> None:
    client = _client(middleware.SecurityHeaders)
    page, api = client.get("/workspaces"), client.get("/api/v1/echo")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "content-security-policy" not in api.headers
    for response in (page, api):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


def test_an_unexpected_error_is_a_500_with_code_message_and_hint(caplog: pytest.LogCaptureFixture) -> None:
    broken = _client(middleware.CatchAll).get("/broken")
    assert broken.status_code == 500
    assert broken.json() == middleware.INTERNAL
    assert "a bug of ours" not in broken.text  # the details stay in the server's log
    assert any("unexpected error" in record.message for record in caplog.records)


@pytest.mark.parametrize(("path", "page"), [("/", True), ("/workspaces/x", True), ("/api/v1/runs", False),
                                            ("/api", False), ("/openapi.json", False), ("/static/app.js", False)])
def test_what_is_a_page(path: str, page: bool) -> None:
    assert middleware.is_page(path) is page


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                                ("localhost", True), ("app.localhost", True),
                                                ("10.0.0.1", False), ("example.com", False)])
def test_what_is_loopback(host: str, loopback: bool) -> None:
    assert middleware.loopback_host(host) is loopback
