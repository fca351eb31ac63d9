"""Drive the real `modelbuilder` command: in-process through `cli.main()` (fast, and through the same
error handler users get), or as `python -m modelbuilder` in a subprocess (for the end-to-end checks).

Every test gets its own home (the root conftest's `home` fixture sets MODELBUILDER_HOME).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbuilder.core.sizes import host_capacity
from modelbuilder.core.store import Store
from tests.cli.driver import Cli, Result, in_process


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli('workspace', 'list', '--json') -> Result, run through `modelbuilder.cli.main()` in this process."""
    return in_process(capsys, monkeypatch)


@pytest.fixture
def run_module(home: Path) -> Cli:
    """run_module('compute', 'list') -> Result of `python -m modelbuilder --home HOME ...` in a subprocess."""
    env = {**os.environ, "COLUMNS": "250", "CUDA_VISIBLE_DEVICES": "", "NO_COLOR": "1"}

    def invoke(*args: str) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "modelbuilder", "--home", str(home), *args],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return invoke


@pytest.fixture
def gpu_less_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This host with its GPUs hidden, as CUDA would see it (so a GPU size cannot be met here)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    host_capacity.cache_clear()
    yield
    host_capacity.cache_clear()


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    """The store of the test's home, for arranging what the commands then read."""
    with Store.open() as opened:
        yield opened
