"""Fixtures for the server tests: the app over a fresh home, a test client, and a real completed run.

`completed_run` is a run that really trained (`tests/completed.py`): one tiny training per test session
(in this process, a few seconds), whose folder is copied under each test's artifact root and walked
through the store's lifecycle (claimed, Running, metrics per epoch, Finalizing, Completed), as a worker
would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelbuilder.config import Settings
from modelbuilder.core.services import Services
from modelbuilder.server.api import create_app
from modelbuilder.server.deps import ServerState
from tests.completed import TINY_RECIPE, TrainedRun, make_completed_run

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture
def app(home: Path) -> FastAPI:
    return create_app(start_agents=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def state(app: FastAPI, client: TestClient) -> ServerState:
    """The app's server state: its services, prediction engines, live feeds."""
    return app.state.server  # type: ignore[no-any-return]


@pytest.fixture
def services(state: ServerState) -> Services:
    """The app's own services (the store it opened), for arranging what a test then reads."""
    return state.services


@pytest.fixture
def token_client(home: Path) -> Iterator[TestClient]:
    app = create_app(Settings(token=TOKEN), start_agents=False)
    with TestClient(app, base_url="http://testserver.example") as test_client:
        yield test_client


@pytest.fixture
def completed_run(services: Services, trained: TrainedRun) -> str:
    """A Completed run in the store whose folder holds the real results of `trained`."""
    return make_completed_run(services, trained)


@pytest.fixture
def queued_run(services: Services, trained: TrainedRun) -> str:
    """A run that waits in the queue (no agent runs in these tests)."""
    services.workspaces.ensure_default()
    return services.runs.submit("default", "pets", "local", {"data": str(trained.data), **TINY_RECIPE},
                                project_name="Tiny").id


# --- a real server in a subprocess ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[str]
    home: Path

    def stop(self) -> str:
        """Stop it as Ctrl-C would; returns its output."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.stdout.read() if self.process.stdout else ""


def server_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MODELBUILDER_HOME": str(home), "MODELBUILDER_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONUNBUFFERED": "1"}
    env.pop("MODELBUILDER_TOKEN", None)
    env.pop("MODELBUILDER_DB_URL", None)
    return env


def client_env(server_url: str, home: Path) -> dict[str, str]:
    """The environment of a client of the server at `server_url` with its own `home` and no store shared with
    the server (MODELBUILDER_SERVER_URL, the token, no MODELBUILDER_DB_URL); wide enough for every column."""
    return {**server_env(home), "MODELBUILDER_SERVER_URL": server_url, "MODELBUILDER_TOKEN": TOKEN, "COLUMNS": "200"}


def run_cli(env: dict[str, str], cwd: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
    """`modelbuilder ARGS` in a subprocess, expected to exit `rc`; a mistake (rc != 0) is one line with its fix,
    never a traceback."""
    done = subprocess.run([sys.executable, "-m", "modelbuilder", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == rc, (args, done.stdout, done.stderr)
    if rc:
        assert done.stderr.count("\n") == 1, done.stderr
        assert "Fix:" in done.stderr, done.stderr
    return done


@pytest.fixture
def start_server(home: Path) -> Iterator[Callable[..., LiveServer]]:
    """start_server('--token', T, host=..., env={...}) -> a `modelbuilder server` on a free port, up and
    answering (reached through loopback whatever it binds to)."""
    started: list[LiveServer] = []

    def start(*args: str, host: str = "127.0.0.1", timeout: float = 60.0, env: dict[str, str] | None = None
              ) -> LiveServer:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "modelbuilder", "server", "--host", host, "--port", str(port), *args],
            env={**server_env(home), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        server = LiveServer(f"http://127.0.0.1:{port}", process, home)
        started.append(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited {process.returncode}: {server.stop()}")
            try:
                httpx.get(f"{server.url}/api/v1/health", timeout=2)
                return server
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"server did not answer within {timeout} s: {server.stop()}")

    yield start
    for server in started:
        server.stop()
