"""What the application layer's tests share: the services, an in-process API client and the CLI driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.server.api import create_app
from tests.cli.driver import Cli, in_process


@pytest.fixture
def services(home: Path) -> Iterator[Services]:
    with Services() as opened:
        yield opened


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(start_agents=False), base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return in_process(capsys, monkeypatch)
