"""The SDK's objects: Workspace, Computes, Experiment and Run, over the application layer.

    from modelbuilder import Workspace

    ws = Workspace.create("team-vision", region="eastus", resource_group="ml")   # or Workspace.get(name)
    ws.computes.create("cpu-1", size="Standard_D2s_v3", priority="low-priority")
    run = ws.experiment("pets").submit(data="data/pets", compute="cpu-1", epochs=10)
    run.wait(show_progress=True)            # or run.wait(on_event=callback), or: for event in run.events()
    print(run.status, run.metrics()["val_accuracy"], run.cost)
    run.download("out/")
    run.export_int8()                       # bestModel.int8.onnx and MLModel.int8.zip beside the float model

Runs execute on an agent: a `modelbuilder server` or `modelbuilder agent` serving the store, or, when
none runs, one started by `Run.wait()` in this process while it waits. Agents start workers from a
fork server, so a script that waits on runs needs the usual `if __name__ == "__main__":` guard.

The objects of one process share one `Services` (one store), made when first needed and closed when
the process exits; pass `services=` to use another store. With MODELBUILDER_SERVER_URL and no
MODELBUILDER_DB_URL they act through that server's REST API instead (`client_of`), as the CLI does: a
local folder given to `submit` is uploaded as a data asset first, and no store is opened here.
"""

from __future__ import annotations

import atexit
import builtins
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuilder import names
from modelbuilder.config import run_url, running_server
from modelbuilder.core import entities as e
from modelbuilder.core.follow import RunEvent
from modelbuilder.core.services import Services
from modelbuilder.sdk import computes, explain, export, remote, remote_models, runs, submit, sweep, wait, workspaces
from modelbuilder.sdk.client import Client
from modelbuilder.training.predictions import Prediction

if TYPE_CHECKING:
    from modelbuilder.results.quantize import Int8Export
    from modelbuilder.sdk.remote_models import ServerExplanation
    from modelbuilder.training.explain import Explanation

_default: Services | None = None
_clients: weakref.WeakKeyDictionary[Services, Client | None] = weakref.WeakKeyDictionary()


def default_services() -> Services:
    """The services of this process's SDK objects (the store of MODELBUILDER_HOME / MODELBUILDER_DB_URL)."""
    global _default
    if _default is None:
        _default = Services()
        atexit.register(_default.close)
    return _default


def client_of(services: Services) -> Client | None:
    """The API client of `services`' settings when they name a server and no store (MODELBUILDER_SERVER_URL
    without MODELBUILDER_DB_URL): the objects then act through that server, as the CLI does. One per
    services, closed when the process exits."""
    if services not in _clients:
        client = _clients[services] = Client.of(services.settings)
        if client is not None:
            atexit.register(client.close)
    return _clients[services]


class Workspace:
    def __init__(self, entity: e.Workspace, services: Services) -> None:
        self.entity, self.services, self.client = entity, services, client_of(services)

    @classmethod
    def create(cls, name: str, region: str = "local", resource_group: str = "default", *,
               services: Services | None = None) -> Workspace:
        s = services or default_services()
        return cls(workspaces.create(s, name, region, resource_group, client_of(s)), s)

    @classmethod
    def get(cls, name: str | None = None, *, services: Services | None = None) -> Workspace:
        """A workspace by name; without one, the one in use (`workspace use`), else `default` (made on first use
        in a local store)."""
        s = services or default_services()
        client = client_of(s)
        return cls(workspaces.get(s, workspaces.in_use(s, name, client)[0], client), s)

    @classmethod
    def list(cls, *, services: Services | None = None) -> list[Workspace]:
        s = services or default_services()
        return [cls(w, s) for w in workspaces.list_workspaces(s, client_of(s))]

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def computes(self) -> Computes:
        return Computes(self)

    def experiment(self, name: str) -> Experiment:
        """An experiment of this workspace; it is registered by its first run."""
        return Experiment(self, names.experiment_name(name))

    def experiments(self) -> builtins.list[Experiment]:
        return [Experiment(self, x.experiment.name)
                for x in workspaces.experiments(self.services, self.name, self.client)]

    def runs(self, experiment: str | None = None, status: str | None = None, limit: int = 100) -> builtins.list[Run]:
        listed = runs.list_runs(self.services, self.name, experiment=experiment, status=status, limit=limit,
                                client=self.client)
        return [Run(r, self) for r in listed]

    def run(self, run_id: str) -> Run:
        return Run(runs.get(self.services, run_id, self.client), self)

    def __repr__(self) -> str:
        return f"Workspace({self.name!r}, region={self.entity.region!r})"


class Computes:
    def __init__(self, workspace: Workspace) -> None:
        self.ws, self.services, self.client = workspace, workspace.services, workspace.client

    def create(self, name: str, size: str = "auto", priority: str = "dedicated", kind: str = "local",
               address: str | None = None) -> e.Compute:
        """Provision a compute; it comes back Succeeded, or Failed with its error (it then stays listed)."""
        return computes.create(self.services, self.ws.name, name, size, priority, kind, address, self.client)

    def get(self, name: str) -> e.Compute:
        return computes.get(self.services, self.ws.name, name, self.client)

    def list(self) -> builtins.list[e.Compute]:
        return computes.list_computes(self.services, self.ws.name, self.client)

    def delete(self, name: str, force: bool = False) -> builtins.list[str]:
        return computes.delete(self.services, self.ws.name, name, force, self.client)


class Experiment:
    def __init__(self, workspace: Workspace, name: str) -> None:
        self.ws, self.name = workspace, name

    def submit(self, data: str | Path, compute: str = "local", *, recipe_file: str | Path | None = None,
               idempotency_key: str | None = None, search: str | Path | dict[str, Any] | None = None,
               max_trials: int | None = None, max_concurrent_trials: int | None = None, sampling: str | None = None,
               early_termination: str | None = None, evaluation_interval: int | None = None,
               delay_evaluation: int | None = None, **recipe: Any) -> Run:
        """Queue a training of `data` on `compute`. `recipe` takes any recipe setting (epochs=10, and
        time_budget='10m'); `recipe_file` a YAML file of them, which these override. The data is
        checked first: a mistake in it is an error now, not a failed run later.

        With `search` ('auto', a YAML space file, or the space as a dict) it queues a sweep instead: a
        parent run whose trials try settings from the space (`sdk.sweep`); the other keywords before
        `recipe` say how many trials, how they are sampled and stopped early.

        Through a server (MODELBUILDER_SERVER_URL and no store), `data` is a data asset (pets, pets:2) or a
        local folder or manifest, uploaded as an asset first (unchanged, nothing is sent again)."""
        settings = sweep.sweep_settings(search, max_trials=max_trials, max_concurrent_trials=max_concurrent_trials,
                                        sampling=sampling, early_termination=early_termination,
                                        evaluation_interval=evaluation_interval, delay_evaluation=delay_evaluation)
        if self.ws.client is not None:
            sent = remote.submit_training(self.ws.services, self.ws.client, {**recipe, "data": data},
                                          workspace=self.ws.name, experiment=self.name, compute=compute,
                                          idempotency_key=idempotency_key, recipe_file=recipe_file, sweep=settings)
            return Run(sent.run, self.ws)
        config = submit.recipe_from({**recipe, "data": data}, recipe_file)
        submitted = submit.submit(self.ws.services, config, workspace=self.ws.name, experiment=self.name,
                                  compute=compute, idempotency_key=idempotency_key, sweep=settings)
        return Run(submitted.run, self.ws)

    def runs(self) -> list[Run]:
        return self.ws.runs(experiment=self.name)

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, workspace={self.ws.name!r})"


class Run:
    def __init__(self, entity: e.Run, workspace: Workspace) -> None:
        self.entity, self.ws, self.services, self.client = entity, workspace, workspace.services, workspace.client

    @property
    def id(self) -> str:
        return self.entity.id

    def refresh(self) -> Run:
        self.entity = runs.get(self.services, self.id, self.client)
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
        server = running_server(self.services.settings)
        return run_url(server, self.ws.name, self.id) if server else None

    def history(self) -> list[e.StatusChange]:
        return runs.history(self.services, self.id, self.client)

    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        """Every metric as (epoch, value) pairs, e.g. metrics()['val_accuracy']."""
        out: dict[str, list[tuple[int, float]]] = {}
        for point in runs.metrics(self.services, self.id, self.client):
            out.setdefault(point.key, []).append((point.step, point.value))
        return {k: sorted(v) for k, v in out.items()}

    def logs(self) -> list[str]:
        return [line.message for line in runs.logs(self.services, self.id, self.client)]

    def trials(self) -> list[sweep.Trial]:
        """A sweep's leaderboard: its trials, best first (settings, accuracy, time, status, why it stopped)."""
        return runs.trials(self.services, self.refresh().entity, self.client)

    def cancel(self) -> Run:
        self.entity = runs.cancel(self.services, self.id, self.client)
        return self

    def events(self, timeout: float | None = None) -> Iterator[RunEvent]:
        """The run's events as they happen (status, log, metrics per epoch, progress), ending with 'end'.
        Only follows; `wait` also runs the queue when no server does."""
        return runs.events(self.services, self.id, self.client, timeout)

    def wait(self, show_progress: bool = False, timeout: float | None = None,
             on_event: Callable[[RunEvent], None] | None = None) -> Run:
        """Until the run ends; runs an agent in this process meanwhile if no server serves the store.
        Each event goes to `on_event`; `show_progress` prints one line per event instead."""
        if show_progress and on_event is None:
            on_event = _print_event
        self.entity = runs.wait_for(self.services, self.id, on_event=on_event, timeout=timeout, client=self.client)
        return self

    def result_metrics(self) -> dict[str, Any]:
        """metrics.json of a finished run: accuracy, per-label table, confusion matrix, history."""
        return runs.evaluation(self.services, self.refresh().entity, self.client)

    def errors(self, *, label: str | None = None, true: str | None = None, predicted: str | None = None,
               include_correct: bool = False, limit: int | None = None) -> list[Prediction]:
        """The validation images the model got wrong, the most confidently wrong first (see `sdk.insight.errors`)."""
        return runs.errors(self.services, self.id, label=label, true=true, predicted=predicted,
                           include_correct=include_correct, limit=limit, client=self.client)

    def data_report(self) -> dict[str, Any]:
        """data_report.json: duplicates, label balance, likely wrong labels, overfitting, skipped files."""
        return runs.data_report(self.services, self.id, self.client)

    def thumbnail(self, kind: str, index: int) -> bytes:
        """A JPEG of image `index` of the gallery 'predictions' (validation images) or 'suspects'."""
        return runs.thumbnail(self.services, self.refresh().entity, kind, index, self.client)

    def explain(self, image: Any, label: str | None = None) -> Explanation | ServerExplanation:
        """Heatmaps of where the run's best network finds `label` (default: its prediction) in `image` (a
        path, bytes, a PIL image or an array): Grad-CAM and integrated gradients, each with its overlay, a
        PNG of the image's size (`sdk.explain.write_overlays` writes them). Through a server, the server
        makes them from the run's checkpoint (`image` a path or bytes) and sends the overlays."""
        if self.client is not None:
            return remote_models.ModelsAPI(self.client).explain_image(self.id, image, label)
        return explain.explain_run(self.services, self.refresh().entity, image, label=label)

    def download(self, output: str | Path) -> dict[str, Path]:
        """Write <Name>.ConsoleApp, <Name>.Model, <Name>.WebApi and the three assets into `output`."""
        return runs.download(self.services, self.id, output, self.client)

    def export_int8(self, output: str | Path | None = None, validation_data: str | Path | None = None,
                    calibration_images: int = export.CALIBRATION_IMAGES,
                    on_step: Callable[[str], None] | None = None) -> Int8Export:
        """bestModel.int8.onnx and MLModel.int8.zip, calibrated on the run's validation images (or on
        `validation_data`), into the run's folder (or `output`), with both models' accuracy and speed."""
        return export.export_int8(self.services, self.id, output=output, validation_data=validation_data,
                                  calibration_images=calibration_images, on_step=on_step, client=self.client)

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.entity.status!r})"


def _print_event(event: RunEvent) -> None:
    line = wait.describe(event)
    if line is not None:
        print(line, flush=True)
