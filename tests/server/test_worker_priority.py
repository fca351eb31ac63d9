"""Training yields the CPU to the server: the workers a server starts run at MODELBUILDER_WORKER_NICE."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from modelbuilder.backends.local import niced
from tests.imagery import make_image_folder

from .conftest import TINY_RECIPE, LiveServer, free_port, server_env
from .test_startup import run_server_command, user_error

NICE = 7  # not the default (10), so the test shows the setting is what decides


def test_a_real_worker_runs_at_the_configured_niceness(start_server: Callable[..., LiveServer],
                                                       tmp_path: Path) -> None:
    server = start_server(env={"MODELBUILDER_WORKER_NICE": str(NICE)})
    data = make_image_folder(tmp_path / "pets", per_label=10)
    # Long enough that it is still training whenever it is looked at, on any machine; canceled below.
    recipe = {"data": str(data), **TINY_RECIPE, "epochs": 10_000, "early_stopping_patience": 10_000}
    response = httpx.post(f"{server.url}/api/v1/runs", json={"experiment": "pets", "recipe": recipe}, timeout=30)
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    api = f"{server.url}/api/v1/runs/{run_id}"
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while httpx.get(api, timeout=30).json()["status"] != "Running":
            assert time.monotonic() < deadline, httpx.get(f"{api}/history", timeout=30).json()
            time.sleep(0.1)
        # The server forks workers from its fork server: the worker is the server's grandchild.
        server_process = psutil.Process(server.process.pid)
        seen = server_process.children(recursive=True)
        workers = [p for p in seen if p.ppid() != server_process.pid]
        assert workers, [(p.pid, p.cmdline()[:3]) for p in seen]
        assert {p.nice() for p in workers} == {NICE}
        assert server_process.nice() == 0  # the server itself keeps its priority
    finally:
        httpx.post(f"{api}/cancel", timeout=30)
        for process in seen:  # workers outlive a server by design: end this test's
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def test_a_launched_group_inherits_the_niceness_from_its_start() -> None:
    """torchrun groups and Ray drivers start under nice(1): every process they start inherits it."""
    command = [sys.executable, "-c", "import os, subprocess, sys; print(os.getpriority(os.PRIO_PROCESS, 0)); "
               "subprocess.run([sys.executable, '-c', 'import os; print(os.getpriority(os.PRIO_PROCESS, 0))'])"]
    own = os.getpriority(os.PRIO_PROCESS, 0)
    done = subprocess.run(niced(command, own + 5), capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == [str(own + 5)] * 2
    assert niced(command, own) == command  # already that nice: started as it is


def test_a_bad_niceness_is_one_line_with_its_fix(home: Path) -> None:
    env = {**server_env(home), "MODELBUILDER_WORKER_NICE": "25"}
    line = user_error(run_server_command(home, "--port", str(free_port()), env=env))
    assert "MODELBUILDER_WORKER_NICE='25' is not valid" in line
    assert "unset it" in line
