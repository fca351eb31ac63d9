"""The control plane of one test, over a store in the test's home: services, helpers to wait on runs,
and pause points to hold a run's worker at a chosen moment."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuilder.backends._pause import ANY_RUN, held_path, parse_point, release_path
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService

TINY = {"architecture": "tiny", "weights": "none", "image_size": 32, "batch_size": 4, "name": "Tiny"}
POLL_S = 0.05


@dataclass(frozen=True)
class Holds:
    """Pause points for the workers of one test (`backends/_pause.py`): where to hold, and the release.

    `at(point)` before a run is submitted holds every run there (and every attempt of it) until
    `release(run_id)`; `at(point, run_id)` holds one run, and must come before an agent can claim it.
    """

    folder: Path

    def at(self, point: str, run_id: str | None = None) -> None:
        parse_point(point)
        (self.folder / f"{run_id or ANY_RUN}.pause").write_text(point)

    def held(self, run_id: str, attempt: int = 1) -> dict[str, Any] | None:
        """Where the worker of that attempt is held (its pid and point), once it is."""
        path = held_path(self.folder, run_id, attempt)
        return json.loads(path.read_text()) if path.exists() else None

    def release(self, *run_ids: str) -> None:
        for run_id in run_ids:
            release_path(self.folder, run_id).touch()


@dataclass
class Plane:
    """The control plane of one test: services over one store, helpers to wait on runs, pause points."""

    store: Store
    workspaces: WorkspaceService
    computes: ComputeService
    runs: RunService
    recorder: RunRecorder
    leases: LeaseService
    data: Path
    home: Path
    holds: Holds

    def recipe(self, **changes: Any) -> dict[str, Any]:
        return {"data": str(self.data), "seed": 0, "epochs": 3, **TINY, **changes}

    def submit(self, experiment: str = "exp", compute: str = "local", **changes: Any) -> Any:
        return self.runs.submit("default", experiment, compute, self.recipe(**changes), project_name="Tiny")

    def history(self, run_id: str) -> list[tuple[str, str]]:
        return [(h.status, h.reason) for h in self.runs.history(run_id)]

    def wait(self, run_id: str, until: Callable[[Any], bool], timeout: float = 240, what: str = "") -> Any:
        """Poll the run until `until(run)`. Only for conditions that stay true once true (an end, a
        claim, a flag a held worker cannot clear): a passing state can come and go between two polls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.runs.get(run_id)
            if until(run):
                return run
            time.sleep(POLL_S)
        raise AssertionError(f"run {run_id} did not reach {what or until} in {timeout}s: {self.history(run_id)}")

    def wait_ended(self, run_id: str, timeout: float = 240) -> Any:
        return self.wait(run_id, lambda run: run.terminal, timeout, "an end")

    def wait_status(self, run_id: str, status: str, timeout: float = 240) -> Any:
        """Wait until the run has been `status` at some time (its history says so, however briefly);
        returns that status change."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            change = next((h for h in self.runs.history(run_id) if h.status == status), None)
            if change is not None:
                return change
            time.sleep(POLL_S)
        raise AssertionError(f"run {run_id} was not {status} in {timeout}s: {self.history(run_id)}")

    def wait_held(self, run_id: str, attempt: int = 1, timeout: float = 240) -> dict[str, Any]:
        """Wait until the worker of `attempt` is held at its pause point; returns where (with its pid)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = self.holds.held(run_id, attempt)
            if held is not None:
                return held
            run = self.runs.get(run_id)
            if (run.terminal or run.attempt > attempt) and self.holds.held(run_id, attempt) is None:
                raise AssertionError(f"run {run_id} attempt {attempt} ended without being held: "
                                     f"{self.history(run_id)}")
            time.sleep(POLL_S)
        raise AssertionError(f"run {run_id} attempt {attempt} was not held in {timeout}s: {self.history(run_id)}")
