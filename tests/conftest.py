"""Fixtures shared by the whole suite: a fresh home per test, tiny real image folders, the control
plane with pause points, agents, and a net that ends every process a test started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelbuilder.backends._pause import PAUSE_ENV
from tests.completed import TrainedRun, train_tiny
from tests.imagery import make_image_folder
from tests.plane import Holds, Plane
from tests.processes import TAG_ENV, end_tagged

# A test must never try the network for pretrained weights.
os.environ.setdefault("MODELBUILDER_OFFLINE", "1")

AGENT_COMMAND = [sys.executable, "-m", "modelbuilder", "agent", "--poll", "0.3"]


@pytest.fixture(autouse=True)
def _end_what_the_test_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process started from the test (agents, servers, `train`, their fork servers and workers)
    is killed when it ends, passed or failed (see tests/processes.py)."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG_ENV, tag)
    yield
    end_tagged(tag)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("MODELBUILDER_HOME", str(folder))
    monkeypatch.delenv("MODELBUILDER_DB_URL", raising=False)
    monkeypatch.setenv("MODELBUILDER_OFFLINE", "1")
    return folder


@pytest.fixture
def holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Holds:
    """Pause points for the workers this test starts (MODELBUILDER_TEST_PAUSE, inherited by them)."""
    folder = tmp_path / "holds"
    folder.mkdir()
    monkeypatch.setenv(PAUSE_ENV, str(folder))
    return Holds(folder)


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """make(name='data', per_label=12, labels=('cat', 'dog'), size=32, odd_files=False) -> folder."""

    def make(name: str = "data", **kwargs: object) -> Path:
        return make_image_folder(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def shared_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only three-label folder shared by tests that only read it."""
    return make_image_folder(tmp_path_factory.mktemp("shared") / "pets", per_label=16,
                             labels=("cat", "dog", "fox"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One real tiny training per test session and its exported results (see tests/completed.py)."""
    return train_tiny(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def plane(home: Path, tmp_path: Path, holds: Holds) -> Iterator[Plane]:
    """Services over a fresh store (default workspace made), a small two-label image folder, and pause points."""
    from modelbuilder.core.compute import ComputeService
    from modelbuilder.core.leases import LeaseService
    from modelbuilder.core.recording import RunRecorder
    from modelbuilder.core.runs import RunService
    from modelbuilder.core.store import Store
    from modelbuilder.core.workspace import WorkspaceService

    store = Store.open()
    workspaces = WorkspaceService(store)
    workspaces.ensure_default()
    data = make_image_folder(tmp_path / "pets", per_label=10, labels=("cat", "dog"))
    yield Plane(store, workspaces, ComputeService(store), RunService(store), RunRecorder(store), LeaseService(store),
                data, home, holds)
    store.close()


@pytest.fixture
def start_agents(plane: Plane) -> Iterator[Callable[..., Any]]:
    """start_agents(**agent_options) -> a scheduler agent in this process; its workers are real
    processes. Agents are stopped and their workers killed when the test ends."""
    from modelbuilder.backends import start_agent

    started: list[Any] = []

    def start(**options: Any) -> Any:
        started.append(start_agent(plane.store, **{"poll_s": 0.2, **options}))
        return started[-1]

    yield start
    for running in started:
        running.stop()
    for running in started:
        for worker in running.workers.values():
            worker.kill()


@pytest.fixture
def agent(start_agents: Callable[..., Any]) -> Any:
    """A scheduler agent in this process, running from the start of the test."""
    return start_agents()


@pytest.fixture
def agent_process(plane: Plane) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """start() -> `modelbuilder agent --poll 0.3` over the plane's store, in a session of its own.

    When the test ends, each agent's session (the agent and its fork server) is killed; its workers,
    in sessions of their own, are ended by the net of `_end_what_the_test_started`.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {**os.environ, "MODELBUILDER_HOME": str(plane.home)}
        started.append(subprocess.Popen(AGENT_COMMAND, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True))
        return started[-1]

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(30)
