"""Test-only pause points: a worker holds at a chosen moment of its run until the test releases it.

Tests of kills, cancels and preemptions must act while a run is in a given phase. Polling the store
for that phase races the machine: on a fast one a tiny run goes from Queued to Completed between two
polls, on a slow one a kill meant for training lands in the data preparation. With a pause point
the worker itself stops at the moment the test named, says so, and waits, so the test acts at that
moment on any machine.

Only tests set `MODELBUILDER_TEST_PAUSE`, to a folder. Unset (always, outside tests), the worker
never looks at the file system for it: `PausePoint.for_run` returns None and the reporter's hooks
are a test of None. The folder holds:

    all.pause                      written by the test: the point for every run without its own file
    <run id>.pause                 written by the test: the point for that run (it must exist before
                                   the run is claimed: a worker reads its point once, when it starts)
    <run id>.<attempt>.held        written by the worker when it stops there: JSON, with its pid and
                                   where it is
    <run id>.release               written by the test: every attempt of that run goes on (at once,
                                   if it is there before the point is reached)

A point is one line: a status the worker reports (`Preparing`, `Running`, `Finalizing`: held just
after it is stored), or a progress phase (`preparing`, `features`, `training`, `evaluating`,
`exporting`) with an optional epoch and step (1-based): held at the first report of that phase at or
after them. `training 3 2` holds after the second step of the third epoch. Each attempt holds at
most once.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAUSE_ENV = "MODELBUILDER_TEST_PAUSE"
ANY_RUN = "all"
STATUSES = ("Preparing", "Running", "Finalizing")
PHASES = ("preparing", "features", "training", "evaluating", "exporting")
POLL_S = 0.05


def parse_point(text: str) -> tuple[str, int, int]:
    """'training 3 2' -> ('training', 3, 2); 'Running' -> ('Running', 0, 0)."""
    parts = text.split()
    if not parts or parts[0] not in STATUSES + PHASES or len(parts) > 3 or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"not a pause point: {text!r} (e.g. 'Running', 'training 3 2', 'exporting')")
    numbers = [int(p) for p in parts[1:]] + [0, 0]
    return parts[0], numbers[0], numbers[1]


def held_path(folder: Path, run_id: str, attempt: int) -> Path:
    return folder / f"{run_id}.{attempt}.held"


def release_path(folder: Path, run_id: str) -> Path:
    return folder / f"{run_id}.release"


@dataclass
class PausePoint:
    folder: Path
    run_id: str
    attempt: int
    where: str
    epoch: int
    step: int
    done: bool = False

    @classmethod
    def for_run(cls, run_id: str, attempt: int) -> PausePoint | None:
        """The point this attempt holds at; None unless a test asked for one."""
        folder = os.environ.get(PAUSE_ENV)
        if not folder:
            return None
        for name in (run_id, ANY_RUN):
            spec = Path(folder) / f"{name}.pause"
            if spec.is_file():
                return cls(Path(folder), run_id, attempt, *parse_point(spec.read_text()))
        return None

    def at_status(self, status: str) -> bool:
        return not self.done and self.where == status

    def at_progress(self, phase: str, epoch: int, step: int) -> bool:
        return not self.done and self.where == phase and (epoch, step) >= (self.epoch, self.step)

    def hold(self, **where: Any) -> None:
        """Say where this worker is, then wait for the test's release."""
        self.done = True
        record = {"pid": os.getpid(), "run_id": self.run_id, "attempt": self.attempt, **where}
        held = held_path(self.folder, self.run_id, self.attempt)
        partial = held.with_name(held.name + ".tmp")
        partial.write_text(json.dumps(record))
        partial.replace(held)  # the test never reads half a record
        release = release_path(self.folder, self.run_id)
        while not release.exists():
            time.sleep(POLL_S)
