"""The Python SDK: the same services as the CLI, as objects.

    from modelbuilder import Workspace

    ws = Workspace.create("team-vision", region="eastus", resource_group="ml")   # or Workspace.get(name)
    ws.computes.create("cpu-1", size="Standard_D2s_v3", priority="low-priority")
    run = ws.experiment("pets").submit(data="data/pets", compute="cpu-1", epochs=10)
    run.wait(show_progress=True)
    print(run.status, run.metrics()["val_accuracy"], run.cost)
    run.download("out/")

Runs execute on an agent: a `modelbuilder server` or `modelbuilder agent` serving the store, or, when
none runs, one started by `Run.wait()` in this process while it waits. Agents start workers from a
fork server, so a script that waits on runs needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.config import get_settings, run_url, running_server, server_runs_agent
from modelbuilder.core import entities as e
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.services import Services
from modelbuilder.core.store import Store
from modelbuilder.errors import Conflict, InvalidInput, ModelBuilderError


class _Session(Services):
    """One store and its services, shared by the objects of one SDK user."""

    def __init__(self, store: Store | None = None) -> None:
        super().__init__(store=store or Store.open())


_default: _Session | None = None


def _session() -> _Session:
    global _default
    if _default is None:
        _default = _Session()
    return _default


class Workspace:
    def __init__(self, entity: e.Workspace, session: _Session) -> None:
        self.entity, self._s = entity, session

    @classmethod
    def create(cls, name: str, region: str = "local", resource_group: str = "default") -> Workspace:
        s = _session()
        return cls(s.workspaces.create(name, region, resource_group), s)

    @classmethod
    def get(cls, name: str | None = None) -> Workspace:
        """A workspace by name; without one, the one in use (`workspace use`), else `default`."""
        s = _session()
        resolved = s.workspaces.resolve(name)
        if resolved == "default":
            s.workspaces.ensure_default()
        return cls(s.workspaces.get(resolved), s)

    @classmethod
    def list(cls) -> list[Workspace]:
        s = _session()
        return [cls(w, s) for w in s.workspaces.list()]

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def computes(self) -> Computes:
        return Computes(self)

    def experiment(self, name: str) -> Experiment:
        """An experiment of this workspace; it is registered by its first run."""
        return Experiment(self, names.experiment_name(name))

    def experiments(self) -> list[Experiment]:
        return [Experiment(self, x.name) for x in self._s.workspaces.list_experiments(self.name)]

    def runs(self, experiment: str | None = None, status: str | None = None, limit: int = 100) -> list[Run]:
        return [Run(r, self) for r in self._s.runs.list(self.name, experiment=experiment, status=status, limit=limit)]

    def run(self, run_id: str) -> Run:
        return Run(self._s.runs.get(run_id), self)

    def __repr__(self) -> str:
        return f"Workspace({self.name!r}, region={self.entity.region!r})"


class Computes:
    def __init__(self, workspace: Workspace) -> None:
        self.ws, self._s = workspace, workspace._s

    def create(self, name: str, size: str = "auto", priority: str = "dedicated", kind: str = "local",
               address: str | None = None) -> e.Compute:
        """Provision a compute; it comes back Succeeded, or Failed with its error (it then stays listed)."""
        return self._s.computes.create(self.ws.name, name, size, priority=priority, kind=kind, address=address)

    def get(self, name: str) -> e.Compute:
        return self._s.computes.get(self.ws.name, name)

    def list(self) -> list[e.Compute]:
        return self._s.computes.list(self.ws.name)

    def delete(self, name: str, force: bool = False) -> list[str]:
        return self._s.computes.delete(self.ws.name, name, force=force)


class Experiment:
    def __init__(self, workspace: Workspace, name: str) -> None:
        self.ws, self.name = workspace, name

    def submit(self, data: str | Path, compute: str = "local", *, idempotency_key: str | None = None,
               **recipe: Any) -> Run:
        """Queue a training of `data` on `compute`; `recipe` takes any TrainConfig setting (epochs=...)."""
        from modelbuilder.training.recipe import TrainConfig

        if "time_budget" in recipe:
            recipe["time_budget_s"] = names.duration_seconds(recipe.pop("time_budget"))
        for key in ("data", "validation_data"):
            if key == "data" or recipe.get(key):
                value = data if key == "data" else recipe[key]
                recipe[key] = str(Path(value).expanduser().resolve())
        config = TrainConfig.from_dict(recipe)
        config = config.with_(name=config.name or names.project_name_from(Path(config.data).stem))
        s = self.ws._s
        entity = s.runs.submit(self.ws.name, self.name, compute, config.to_dict(), project_name=config.name,
                               idempotency_key=idempotency_key)
        return Run(entity, self.ws)

    def runs(self) -> list[Run]:
        return self.ws.runs(experiment=self.name)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, workspace={self.ws.name!r})"


class Run:
    def __init__(self, entity: e.Run, workspace: Workspace) -> None:
        self.entity, self.ws, self._s = entity, workspace, workspace._s

    @property
    def id(self) -> str:
        return self.entity.id

    def refresh(self) -> Run:
        self.entity = self._s.runs.get(self.id)
        return self

    @property
    def status(self) -> str:
        return self.refresh().entity.status

    @property
    def compute_seconds(self) -> float:
        return self.refresh().entity.compute_seconds

    @property
    def cost(self) -> float:
        """Estimated cost in USD: compute time x the size's hourly price (low-priority discounted)."""
        return self.refresh().entity.cost

    @property
    def portal_url(self) -> str | None:
        server = running_server(get_settings())
        return run_url(server, self.ws.name, self.id) if server else None

    def history(self) -> list[e.StatusChange]:
        return self._s.runs.history(self.id)

    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        """Every metric as (epoch, value) pairs, e.g. metrics()['val_accuracy']."""
        out: dict[str, list[tuple[int, float]]] = {}
        for point in self._s.recorder.metrics(self.id):
            out.setdefault(point.key, []).append((point.step, point.value))
        return {k: sorted(v) for k, v in out.items()}

    def logs(self) -> list[str]:
        return [line.message for line in self._s.recorder.logs(self.id, limit=100_000)]

    def cancel(self) -> Run:
        self.entity = self._s.runs.request_cancel(self.id)
        return self

    def wait(self, show_progress: bool = False, timeout: float | None = None) -> Run:
        """Until the run ends; runs an agent in this process meanwhile if no server serves the store."""
        import time

        from modelbuilder.backends import start_agent

        agent = None if server_runs_agent(get_settings()) else start_agent(self._s.store, poll_s=0.5)
        try:
            if show_progress:
                from modelbuilder.cli.runs import watch

                watch(self.id, self._s.runs)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.refresh().entity.terminal:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"run {self.id} is still {self.entity.status} after {timeout} s")
                time.sleep(0.5)
        finally:
            if agent is not None:
                agent.stop()
        return self

    def result_metrics(self) -> dict[str, Any]:
        """metrics.json of a finished run: accuracy, per-label table, confusion matrix, history."""
        path = self._dir() / "metrics.json"
        if not path.is_file():
            raise Conflict(f"Run {self.id} has no evaluation yet ({self.status}).", "wait for it to end.")
        return json.loads(path.read_text())

    def download(self, output: str | Path) -> dict[str, Path]:
        """Write <Name>.ConsoleApp, <Name>.Model and the three assets into `output`."""
        from modelbuilder.results.bundle import copy_results

        if not (self._dir() / "MLModel.zip").is_file():
            raise Conflict(f"Run {self.id} has no results ({self.status}).", "wait until it is Completed.")
        return copy_results(self._dir(), self.refresh().entity.project_name or "MLModel", Path(output))

    def _dir(self) -> Path:
        return ArtifactStore(get_settings().artifacts).run_dir(self.id)

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.entity.status!r})"


__all__ = ["Computes", "Experiment", "InvalidInput", "ModelBuilderError", "Run", "Workspace"]
