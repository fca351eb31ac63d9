"""Fixtures shared by the whole suite: a fresh home per test and tiny real image folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.imagery import make_image_folder
from tests.plane import Plane

# A test must never try the network for pretrained weights.
os.environ.setdefault("MODELBUILDER_OFFLINE", "1")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("MODELBUILDER_HOME", str(folder))
    monkeypatch.delenv("MODELBUILDER_DB_URL", raising=False)
    monkeypatch.setenv("MODELBUILDER_OFFLINE", "1")
    return folder


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


@pytest.fixture
def plane(home: Path, tmp_path: Path) -> Iterator[Plane]:
    """Services over a fresh store (default workspace made) and a small two-label image folder."""
    from modelbuilder.core.compute import ComputeService
    from modelbuilder.core.leases import LeaseService
    from modelbuilder.core.runs import RunService
    from modelbuilder.core.store import Store
    from modelbuilder.core.workspace import WorkspaceService

    store = Store.open()
    workspaces = WorkspaceService(store)
    workspaces.ensure_default()
    data = make_image_folder(tmp_path / "pets", per_label=10, labels=("cat", "dog"))
    yield Plane(store, workspaces, ComputeService(store), RunService(store), LeaseService(store), data, home)
    store.close()


@pytest.fixture
def agent(plane: Plane) -> Iterator[Any]:
    """A scheduler agent in this process; its workers are real processes, killed if left running."""
    from modelbuilder.backends import start_agent

    running = start_agent(plane.store, poll_s=0.2)
    yield running
    running.stop()
    for worker in running.workers.values():
        worker.kill()
