"""The token: every API route and page needs it once it is set; binds that need one refuse to start."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelbuilder.errors import InvalidInput
from modelbuilder.server.api import create_app
from modelbuilder.server.auth import COOKIE, check_bind, safe_next

from .conftest import TOKEN

SAMPLE_PARAMS = {"workspace": "default", "experiment": "pets", "compute": "local", "run_id": "run-0123456789ab",
                 "relpath": "bestModel.onnx", "key": "val_loss", "step": "1", "kind": "predictions", "index": "0",
                 "name": "pets", "which": "1", "alias": "production", "upload_id": "0" * 32}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def every_operation(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json", headers=BEARER).json()
    operations = []
    for template, methods in schema["paths"].items():
        path = template
        for name, value in SAMPLE_PARAMS.items():
            path = path.replace("{" + name + "}", value)
        assert "{" not in path, template
        operations += [(method.upper(), path) for method in methods]
    return operations


def test_every_route_needs_the_token(token_client: TestClient) -> None:
    operations = every_operation(token_client)
    assert len(operations) >= 25
    for method, path in [*operations, ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"),
                         ("GET", "/api/v1/nothing"), ("DELETE", "/api/v1/workspaces/default")]:
        refused = token_client.request(method, path)
        assert refused.status_code == 401, (method, path, refused.status_code)
        assert refused.json()["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        for wrong in ("Bearer wrong-token-0123456789", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
            assert token_client.request(method, path, headers={"Authorization": wrong}).status_code == 401, wrong
        allowed = token_client.request(method, path, headers=BEARER)
        assert allowed.status_code != 401, (method, path, allowed.text)


def test_pages_redirect_to_the_login_and_the_cookie_opens_them(token_client: TestClient) -> None:
    token_client.post("/api/v1/workspaces", json={"name": "team-a"}, headers=BEARER)
    for page in ("/", "/workspaces/team-a", "/workspaces/team-a/runs/run-0123456789ab", "/no/such/page"):
        response = token_client.get(page, follow_redirects=False)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/login?next="), page
    form = token_client.get("/login")
    assert form.status_code == 200
    assert 'name="token"' in form.text

    wrong = token_client.post("/login", data={"token": "nope", "next": "/workspaces/team-a"}, follow_redirects=False)
    assert wrong.status_code == 401
    assert COOKIE not in wrong.cookies
    signed_in = token_client.post("/login", data={"token": TOKEN, "next": "/workspaces/team-a"},
                                  follow_redirects=False)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/workspaces/team-a"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN not in cookie  # the cookie holds a value derived from the token, not the token

    assert token_client.get("/workspaces/team-a").status_code == 200  # the client keeps the cookie
    assert token_client.get("/api/v1/workspaces").status_code == 200
    token_client.post("/logout")
    assert token_client.get("/", follow_redirects=False).status_code == 303


def test_cookie_requests_from_other_sites_cannot_change_anything(token_client: TestClient) -> None:
    token_client.post("/login", data={"token": TOKEN})
    hostile = token_client.post("/api/v1/workspaces", json={"name": "team-x"},
                                headers={"Origin": "https://evil.example"})
    assert hostile.status_code == 403
    assert token_client.get("/api/v1/workspaces/team-x").status_code == 404
    same = token_client.post("/api/v1/workspaces", json={"name": "team-x"},
                             headers={"Origin": "http://testserver.example"})
    assert same.status_code == 201


@pytest.mark.parametrize(("target", "expected"), [
    ("/workspaces/a", "/workspaces/a"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), ("", "/"), ("/ok?x=1", "/ok?x=1"), ("/x\r\nSet-Cookie: a=b", "/"),
])
def test_login_only_redirects_to_this_server(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_without_a_token_only_loopback_host_names_are_answered(home: Path) -> None:
    app = create_app(start_agents=False)
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.2"):
        with TestClient(app, base_url=f"http://{host}") as client:
            assert client.get("/api/v1/health").status_code == 200, host
    for host in ("evil.example", "evil.example:8765", "192.168.1.20:8765", "127.0.0.1.evil.example"):
        with TestClient(app, base_url=f"http://{host}") as client:
            response = client.get("/api/v1/health")
            assert response.status_code == 400, host
            assert response.json()["code"] == "bad_host", host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", ""])
def test_other_binds_need_a_token(host: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_bind(host, None)
    assert "--token" in refused.value.hint
    assert "127.0.0.1" in refused.value.hint
    check_bind(host, TOKEN)


def test_a_short_token_is_refused() -> None:
    with pytest.raises(InvalidInput, match="too short"):
        check_bind("0.0.0.0", "secret")
