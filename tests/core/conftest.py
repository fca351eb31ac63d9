"""One `store` fixture for the control plane's tests: every test runs on SQLite and on PostgreSQL.

PostgreSQL runs when MODELBUILDER_TEST_PG_URL points at a server (for example
postgresql+psycopg://postgres@127.0.0.1:5432/postgres); each test gets a schema of its own in that
database, created through a maintenance connection and dropped afterwards. Without it those cases skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from modelbuilder.core.compute import ComputeService
from modelbuilder.core.entities import Run
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService

PG_URL = os.environ.get("MODELBUILDER_TEST_PG_URL")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="MODELBUILDER_TEST_PG_URL is not set"),
        ],
    ),
]


def _pg_admin() -> psycopg.Connection:
    assert PG_URL
    url = make_url(PG_URL).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MODELBUILDER_HOME for the test (the context file, default store and prices live here)."""
    folder = tmp_path / "home"
    monkeypatch.setenv("MODELBUILDER_HOME", str(folder))
    monkeypatch.delenv("MODELBUILDER_DB_URL", raising=False)
    return folder


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, home: Path) -> Iterator[str]:
    """The URL of an empty store: a SQLite file in the test's home, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'modelbuilder.db'}"
        return
    # A schema of its own per test (cheaper than a database): the URL puts it first on the search path.
    schema = f"mb_test_{secrets.token_hex(6)}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = make_url(PG_URL or "").update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def workspaces(store: Store) -> WorkspaceService:
    return WorkspaceService(store)


@pytest.fixture
def computes(store: Store) -> ComputeService:
    return ComputeService(store)


@pytest.fixture
def runs(store: Store) -> RunService:
    return RunService(store)


@pytest.fixture
def recorder(store: Store) -> RunRecorder:
    return RunRecorder(store)


@pytest.fixture
def leases(store: Store) -> LeaseService:
    return LeaseService(store)


@dataclass(frozen=True)
class Team:
    """A workspace with a dedicated and a low-priority compute, both sized for this host."""

    workspace: str
    dedicated: str
    dedicated_id: str
    spot: str
    spot_id: str


@pytest.fixture
def team(workspaces: WorkspaceService, computes: ComputeService) -> Team:
    workspaces.create("team-vision", "westeurope", "ml-rg")
    dedicated = computes.create("team-vision", "gpu-1", "auto", "dedicated")
    spot = computes.create("team-vision", "spot-1", "auto", "low-priority")
    assert dedicated.state == spot.state == "Succeeded", (dedicated.error, spot.error)
    return Team("team-vision", dedicated.name, dedicated.id, spot.name, spot.id)


@pytest.fixture
def recipe() -> dict[str, object]:
    return {"data": "/data/pets", "epochs": 3, "architecture": "tiny"}


def claim(leases: LeaseService, team: Team, owner: str = "agent-a") -> Run:
    """The next queued run of the team's computes, claimed by `owner`."""
    run = leases.claim_next_run([team.dedicated_id, team.spot_id], owner, lease_seconds=60)
    assert run is not None
    return run


def running(runs: RunService, leases: LeaseService, team: Team, recipe: dict[str, object]) -> Run:
    """A new run of the team's dedicated compute, claimed (attempt 1) and Running."""
    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    run = claim(leases, team)
    return runs.transition(run.id, "Running", "training started", attempt=run.attempt)
