"""`modelbuilder server` as a real process: the bind rules, the token over the network, server.json,
and hostile raw requests that no HTTP client library would send as written."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import TOKEN, LiveServer, free_port, server_env

SECRET = b"SERVER-SECRET-7f3a"


def run_server_command(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelbuilder", "server", *args], env=env or server_env(home),
                          capture_output=True, text=True, timeout=60, check=False)


def user_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start prints (exit 2, no traceback)."""
    assert done.returncode == 2, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_public_bind_without_a_token_does_not_start(home: Path, host: str) -> None:
    line = user_error(run_server_command(home, "--host", host, "--port", str(free_port())))
    assert "without a token" in line
    assert "--token" in line
    assert "--host 127.0.0.1" in line
    assert not (home / "server.json").exists()


def test_a_busy_port_is_a_one_line_error(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        line = user_error(run_server_command(home, "--port", str(busy.getsockname()[1])))
    assert "--port" in line


def test_with_a_token_it_serves_and_checks_every_request(start_server: Callable[..., LiveServer], home: Path) -> None:
    """A public bind with the token from MODELBUILDER_TOKEN (the browser test passes --token)."""
    server = start_server(host="0.0.0.0", env={"MODELBUILDER_TOKEN": TOKEN})
    info = json.loads((home / "server.json").read_text())
    assert info["url"] == server.url
    assert info["pid"] == server.process.pid
    assert info["agent"] is True
    assert httpx.get(f"{server.url}/api/v1/health").status_code == 401
    wrong = httpx.get(f"{server.url}/api/v1/health", headers={"Authorization": "Bearer nope-nope-nope"})
    assert wrong.status_code == 401
    healthy = httpx.get(f"{server.url}/api/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert healthy.status_code == 200
    assert healthy.json()["agent"] is True
    assert httpx.get(f"{server.url}/openapi.json").status_code == 401
    assert httpx.get(f"{server.url}/", follow_redirects=False).headers["location"].startswith("/login")
    output = server.stop()
    assert server.process.returncode == 0, output
    assert not (home / "server.json").exists()
    assert "Traceback" not in output


def raw_request(url: str, target: str) -> tuple[int, bytes]:
    """Send `target` exactly as written in the request line (http.client does not normalise it)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_raw_hostile_requests_to_the_real_server(start_server: Callable[..., LiveServer], completed_run: str,
                                                 home: Path) -> None:
    (home / "secret.txt").write_bytes(SECRET)
    (home / "artifacts" / "secret.txt").write_bytes(SECRET)
    server = start_server("--no-agent")
    base = f"/api/v1/runs/{completed_run}/artifacts/"
    for trick in ("../secret.txt", "../../secret.txt", "..%2fsecret.txt", "%2e%2e/secret.txt", "%2e%2e%2fsecret.txt",
                  "%252e%252e%252fsecret.txt", "..\\secret.txt", "..%5csecret.txt", "/etc/passwd",
                  "%2fetc%2fpasswd", "C:\\x", "#/../../secret.txt", "%23/../secret.txt", "?x=../secret.txt",
                  "bestModel.onnx%00", "./../secret.txt"):
        status, body = raw_request(server.url, base + trick)
        assert status in (400, 404), (trick, status, body[:200])
        assert SECRET not in body
    for target in ("/api/v1/runs/../../secret.txt", "/../secret.txt", "/static/../secret.txt",
                   "/static/..%2f..%2fsecret.txt", "/static/%2e%2e/%2e%2e/secret.txt"):
        status, body = raw_request(server.url, target)
        assert status in (400, 404), (target, status)
        assert SECRET not in body
    status, body = raw_request(server.url, base + "bestModelMap.json")
    assert status == 200
    assert json.loads(body) == ["cat", "dog"]
    assert os.path.exists(home / "secret.txt")
