"""Ending every process a test started, including the ones it cannot see.

A test that runs `modelbuilder agent`, `server` or `train` in a subprocess starts more than that
process: its fork server, and the workers forked from it, which lead sessions of their own and by
design outlive the command that started them (a worker finishes its run when its agent stops). A
failing test must not leave them behind, polling a temporary store.

Every test runs with TAG_ENV set to a value of its own (the root conftest's autouse fixture), and
every process started from the test inherits it. `/proc/PID/environ` keeps the environment a process
started with, which a forked worker shares with its fork server even after it replaced `os.environ`,
so `end_tagged` finds them all, wherever they were reparented, and kills them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

TAG_ENV = "MODELBUILDER_TEST_PROCESS_TAG"
# Helpers multiprocessing starts for the test process itself, on the first use by some test; later
# tests use them too, so they are not that test's to end (their workers are, and the `agent` fixture
# ends those).
_OWN_HELPERS = (b"multiprocessing.forkserver", b"multiprocessing.resource_tracker")


def _parent_and_command(pid: int) -> tuple[int, bytes]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1]), Path(f"/proc/{pid}/cmdline").read_bytes()


def tagged(tag: str) -> list[int]:
    """The live processes (other than this one and its own multiprocessing helpers) started under `tag`."""
    needle, me = f"{TAG_ENV}={tag}".encode(), os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            if needle not in Path(entry.path, "environ").read_bytes().split(b"\0"):
                continue
            parent, command = _parent_and_command(pid)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if parent == me and any(helper in command for helper in _OWN_HELPERS):
            continue
        found.append(pid)
    return found


def end_tagged(tag: str, patience_s: float = 10.0) -> list[int]:
    """Kill (SIGKILL) every process started under `tag` and wait until they are gone; returns their pids."""
    ended: list[int] = []
    deadline = time.monotonic() + patience_s
    while (left := tagged(tag)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in ended:
                ended.append(pid)
        time.sleep(0.05)  # a killed process's environment reads empty once it is a zombie
    return ended
