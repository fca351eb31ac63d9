"""The control plane of one test, over a store in the test's home: services and helpers to wait on runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuilder.core.compute import ComputeService
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService

TINY = {"architecture": "tiny", "weights": "none", "image_size": 32, "batch_size": 4, "name": "Tiny"}


@dataclass
class Plane:
    """The control plane of one test: services over one store, and helpers to wait on runs."""

    store: Store
    workspaces: WorkspaceService
    computes: ComputeService
    runs: RunService
    leases: LeaseService
    data: Path
    home: Path

    def recipe(self, **changes: Any) -> dict[str, Any]:
        return {"data": str(self.data), "seed": 0, "epochs": 3, **TINY, **changes}

    def submit(self, experiment: str = "exp", compute: str = "local", **changes: Any) -> Any:
        return self.runs.submit("default", experiment, compute, self.recipe(**changes), project_name="Tiny")

    def wait(self, run_id: str, until: Callable[[Any], bool], timeout: float = 240, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.runs.get(run_id)
            if until(run):
                return run
            time.sleep(0.2)
        history = [(h.status, h.reason) for h in self.runs.history(run_id)]
        raise AssertionError(f"run {run_id} did not reach {what or until} in {timeout}s: {history}")

    def wait_ended(self, run_id: str, timeout: float = 240) -> Any:
        return self.wait(run_id, lambda run: run.terminal, timeout, "an end")

    def wait_epoch(self, run_id: str, epoch: int, timeout: float = 240) -> Any:
        return self.wait(run_id, lambda run: (run.resume_epoch or 0) >= epoch and run.status == "Running",
                         timeout, f"epoch {epoch} checkpointed")


