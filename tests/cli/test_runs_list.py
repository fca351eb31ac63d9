"""`modelbuilder runs list` in a narrow terminal and piped: run ids and names are never cut."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelbuilder.cli.console import console
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService
from tests.cli.driver import Cli

LONG_EXPERIMENT = "image-classification-of-pets-at-home"  # the longest name allowed (36)


@pytest.fixture
def run_ids(store: Store) -> list[str]:
    WorkspaceService(store).ensure_default()
    runs = RunService(store)
    return [runs.submit("default", experiment, "local", {"epochs": 1}).id
            for experiment in (LONG_EXPERIMENT, "pets", "birds-of-the-north")]


def _whole_on_one_line(text: str, *values: str) -> None:
    for value in values:
        assert any(value in line for line in text.splitlines()), f"{value!r} is cut or wrapped in:\n{text}"


def test_an_80_column_terminal_shows_whole_run_ids_and_experiment_names(cli: Cli, run_ids, monkeypatch):
    monkeypatch.setattr(console, "width", 80)
    result = cli("runs", "list").ok()
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    _whole_on_one_line(result.stdout, *run_ids, LONG_EXPERIMENT, "birds-of-the-north")
    assert "…" not in result.stdout  # no cell was cut short
    rows = result.rows()
    assert sorted(row[0] for row in rows) == sorted(run_ids)
    assert {row[2] for row in rows} == {"Queued"}  # the status stays; later columns gave way, and say so
    assert "Not shown at 80 columns: " in result.stdout


def test_piped_output_shows_whole_run_ids_and_experiment_names(run_ids, home: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    listed = subprocess.run([sys.executable, "-m", "modelbuilder", "--home", str(home), "runs", "list"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    _whole_on_one_line(listed.stdout, *run_ids, LONG_EXPERIMENT, "birds-of-the-north")
    assert "…" not in listed.stdout


def test_a_wide_terminal_shows_every_column(cli: Cli, run_ids):
    result = cli("runs", "list").ok()  # the driver's console is 250 columns wide
    assert len(result.rows()[0]) == 8
    assert "Not shown" not in result.stdout
