"""Training through a server's REST API, for a client that shares no store and no folder with it
(`sdk.client`): upload its data, submit a run (or a sweep) and fetch its result bundle; and what the API
answers about runs, workspaces, experiments and computes as the entities the store gives (`RunsAPI`,
`WorkspacesAPI`, `run_of`), so every renderer shows either alike, and `core.follow` follows a run through it.

    with Client(url, token) as client:
        submitted = remote.submit_training(services, client, {"data": "images/", "epochs": 3})
        ended = runs.wait_for(services, submitted.run.id, client=client)
        remote.download(client, ended.id, "out/")
"""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.core.sizes import SizeSpec
from modelbuilder.core.workspace import DEFAULT_WORKSPACE
from modelbuilder.errors import InvalidInput
from modelbuilder.results.files import METRICS_FILE
from modelbuilder.sdk import data, ingest, results
from modelbuilder.sdk.client import Client
from modelbuilder.sdk.submit import Submitted, default_experiment, is_data_asset, recipe_from
from modelbuilder.sdk.sweep import Trial
from modelbuilder.training.predictions import Prediction
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.search import AUTO, SweepSettings


def asset_name_for(path: str | Path) -> str:
    """The data asset a local folder or manifest is uploaded as when a remote training is given its path."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).expanduser().resolve().stem).strip("-_")[:64]
    return slug if len(slug) >= 2 and slug[0].isalnum() else "data"


def local_data(settings: Mapping[str, Any]) -> Path | None:
    """The local folder or manifest a remote training was given, which must be uploaded first; None for an asset."""
    data = settings.get("data")
    return None if data is None or is_data_asset(data) else Path(str(data))


def recipe_body(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The API's recipe from the CLI's and the SDK's settings: durations in seconds, nothing left unset."""
    body = {key: value for key, value in settings.items() if value is not None}
    if "time_budget" in body:
        body["time_budget_s"] = names.duration_seconds(body.pop("time_budget"))
    data = body.get("data")
    if data is None:
        raise InvalidInput("No training data given.", "give a data asset: --data NAME or --data NAME:VERSION.")
    if not is_data_asset(data):
        raise InvalidInput(f"{str(data)!r} is not a data asset, and the server cannot read a path on this machine.",
                           f"upload it first ('modelbuilder data upload {data} --name NAME') and train on the "
                           "asset by name.")
    if body.get("from_model") is not None:
        raise InvalidInput("A model file cannot be sent to a server: it would unpickle a client's file.",
                           "start from one of the server's runs instead (--from-run RUN_ID).")
    if body.get("validation_data") is not None:
        raise InvalidInput("Separate validation data cannot be sent to a server yet.",
                           "leave out --validation-data (a share of each label is held out).")
    body["data"] = str(data)
    return body


def submit(client: Client, settings: Mapping[str, Any], *, workspace: str | None = None,
           experiment: str | None = None, compute: str = "local", idempotency_key: str | None = None,
           sweep: SweepSettings | None = None) -> dict[str, Any]:
    """Queue a run (with `sweep`, a sweep's parent) on the server; its answer (RunPublic) comes back."""
    recipe = recipe_body(settings)
    asset = names.data_ref(recipe["data"])[0]
    request: dict[str, Any] = {"workspace": workspace or DEFAULT_WORKSPACE, "compute": compute, "recipe": recipe,
                               "experiment": experiment or default_experiment(asset)}
    if idempotency_key:
        request["idempotency_key"] = idempotency_key
    if sweep is not None:
        request["search"] = search_body(sweep)
    return dict(client.json("POST", "/runs", json=request))


def search_body(settings: SweepSettings) -> dict[str, Any]:
    """A sweep's settings as `POST /runs` takes them: 'auto', or the space itself, read here from the
    client's file (the server reads no file of the client's)."""
    return {"search": AUTO if settings.search == AUTO else settings.space, "max_trials": settings.max_trials,
            "max_concurrent_trials": settings.max_concurrent_trials, "sampling": settings.sampling,
            "early_termination": settings.early_termination, "evaluation_interval": settings.evaluation_interval,
            "delay_evaluation": settings.delay_evaluation}


def sendable(settings: Mapping[str, Any], recipe_file: str | Path | None) -> dict[str, Any]:
    """The settings of a training to send: a face's, over a recipe file's. The file is read and checked here
    (`recipe_from`: a data path in it is relative to its folder), and of it only what differs from
    the recipe's defaults is sent, so the server's defaults stay the defaults."""
    if recipe_file is None:
        return dict(settings)
    config = recipe_from(settings, recipe_file)
    defaults = TrainConfig(data=config.data).to_dict()
    return {key: value for key, value in config.to_dict().items() if key != "extra" and value != defaults[key]} | {
        "data": config.data}


def upload_data(services: Services, client: Client, settings: Mapping[str, Any], workspace: str | None = None,
                on_upload: data.Progress | None = None) -> tuple[dict[str, Any], data.Uploaded | None]:
    """The settings of a training to send: a local folder or manifest given as its data is uploaded first as
    a data asset named after it (resumable; unchanged, nothing is sent) and named by its version; and the
    upload, if there was one."""
    folder = local_data(settings)
    if folder is None:
        return dict(settings), None
    uploaded = data.upload(services, folder, asset_name_for(folder), workspace=services.workspaces.resolve(workspace),
                           client=client, on_progress=on_upload)
    return {**settings, "data": uploaded.version.ref}, uploaded


def submit_training(services: Services, client: Client, settings: Mapping[str, Any], *,
                    workspace: str | None = None, experiment: str | None = None, compute: str = "local",
                    idempotency_key: str | None = None, recipe_file: str | Path | None = None,
                    sweep: SweepSettings | None = None) -> Submitted:
    """A training (with `sweep`, a sweep) queued on the server in `workspace` (given, else the one in use),
    its data uploaded first when it is a local path (`upload_data`), as `sdk.submit.submit` answers."""
    sent, _ = upload_data(services, client, sendable(settings, recipe_file), workspace)
    answer = submit(client, sent, workspace=services.workspaces.resolve(workspace), experiment=experiment,
                    compute=compute, idempotency_key=idempotency_key, sweep=sweep)
    return Submitted(run_of(answer), answer["workspace"], None, client.url + answer["portal_path"])


def download(client: Client, run_id: str, output: str | Path) -> dict[str, Path]:
    """The run's result bundle (MLModel.zip, bestModel.onnx, bestModelMap.json, the projects) into `output`;
    what it placed there, by name, as `sdk.results.download` answers."""
    return fetch_zip(client, f"/runs/{run_id}/bundle", output)


def fetch_zip(client: Client, route: str, output: str | Path) -> dict[str, Path]:
    """A zip the server answers at `route`, unpacked into `output`: what it placed there, by name."""
    target = Path(output).expanduser()
    with tempfile.TemporaryDirectory(prefix="modelbuilder-bundle-") as tmp:
        bundle = client.download(route, Path(tmp) / "bundle.zip")
        with zipfile.ZipFile(bundle) as archive:
            infos = archive.infolist()
            ingest.check_members(infos, 1 << 62)  # nothing from the server lands outside `output` either
            target.mkdir(parents=True, exist_ok=True)
            root = target.resolve()
            for info in infos:
                path = (root / info.filename).resolve()
                if not path.is_relative_to(root):
                    raise InvalidInput(f"The bundle names a path out of its folder: {info.filename[:80]!r}.",
                                       "report this server; nothing was written outside the folder.")
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, path.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
    return {name: target / name for name in sorted({i.filename.split("/", 1)[0] for i in infos})}


# --- what the API answers, as entities -----------------------------------------------------------------------
class RunsAPI:
    """Runs and what they recorded, through the API, answered as the store's services answer: the entities
    of `core.entities`. Its reads are `core.follow`'s `RunReads` and `RecordReads`, so a client of a remote
    server follows a run as a local one is followed."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list_runs(self, workspace: str, experiment: str | None = None, status: str | None = None,
                  limit: int = 100) -> list[e.Run]:
        """The workspace's runs, newest first."""
        answer = self.client.json("GET", "/runs", retry=True, params=given(
            workspace=workspace, experiment=experiment, status=status, limit=limit))
        return [run_of(body) for body in answer]

    def get(self, run_id: str) -> e.Run:
        return run_of(self.client.json("GET", f"/runs/{run_id}", retry=True))

    def cancel(self, run_id: str) -> e.Run:
        return run_of(self.client.json("POST", f"/runs/{run_id}/cancel"))

    def history(self, run_id: str) -> list[e.StatusChange]:
        return [_change_of(run_id, c) for c in self.client.json("GET", f"/runs/{run_id}/history", retry=True)]

    def artifacts(self, run_id: str) -> list[e.ArtifactRecord]:
        return [_artifact_of(run_id, a) for a in self.client.json("GET", f"/runs/{run_id}/artifacts", retry=True)]

    def trials(self, run_id: str) -> list[Trial]:
        return [Trial(**t) for t in self.client.json("GET", f"/runs/{run_id}/trials", retry=True)]

    def errors(self, run_id: str, *, label: str | None = None, true: str | None = None,
               predicted: str | None = None, include_correct: bool = False, limit: int | None = None
               ) -> list[Prediction]:
        """The validation images the run got wrong, as `sdk.insight.errors` selects and orders them."""
        answer = self.client.json("GET", f"/runs/{run_id}/errors", retry=True, params=given(
            label=label, true=true, predicted=predicted, all=include_correct, limit=limit))
        return [_prediction_of(row) for row in answer]

    def data_report(self, run_id: str) -> dict[str, Any]:
        return dict(self.client.json("GET", f"/runs/{run_id}/data-report", retry=True))

    def evaluation(self, run_id: str) -> dict[str, Any]:
        """metrics.json of a finished run (`sdk.results.evaluation`); Conflict (409) before it has results."""
        run = self.client.json("GET", f"/runs/{run_id}", retry=True)
        if not run["has_results"]:
            raise results.no_results(run_of(run))
        return dict(self.client.json("GET", f"/runs/{run_id}/artifacts/{METRICS_FILE}", retry=True))

    def thumbnail(self, run_id: str, kind: str, index: int) -> bytes:
        """The JPEG of image `index` of the gallery `kind` (`sdk.insight.thumbnail`)."""
        return self.client.request("GET", f"/runs/{run_id}/thumbnails/{kind}/{index}", retry=True).content

    def metrics(self, run_id: str, key: str | None = None, after_step: int | None = None) -> list[e.MetricPoint]:
        """The run's metric points by key, then step; only `key`'s, and only the steps after `after_step`."""
        points = self.client.json("GET", f"/runs/{run_id}/metrics", params=given(key=key, after_step=after_step),
                                  retry=True)
        return [e.MetricPoint(run_id, p["key"], p["step"], math.nan if p["value"] is None else p["value"],
                              datetime.fromisoformat(p["at"])) for p in points]

    def logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[e.LogLine]:
        answer = self.client.json("GET", f"/runs/{run_id}/logs", params={"after_seq": after_seq, "limit": limit},
                                  retry=True)
        return [_line_of(run_id, line) for line in answer["lines"]]


def run_of(body: dict[str, Any]) -> e.Run:
    """A run as the API sends it (RunPublic), as the entity the store gives. What the API does not show (the
    rows' ids, the lease, the request's hash) is left empty; `workspace_id` holds the workspace's name."""
    return e.Run(
        id=body["id"], workspace_id=body["workspace"], experiment_id="", experiment_name=body["experiment"],
        compute_id=None, compute_name=body["compute"], status=body["status"], status_reason=body["status_reason"],
        recipe=dict(body["recipe"]), project_name=body["project_name"],
        created_at=datetime.fromisoformat(body["created_at"]), started_at=_at(body["started_at"]),
        ended_at=_at(body["ended_at"]), attempt=body["attempt"], lease_owner=None, lease_expires_at=None,
        preemptions=body["preemptions"], error_retries=body["error_retries"],
        max_error_retries=body["max_error_retries"], max_preemptions=None,
        resume_from=None, progress=dict(body["progress"]), best_metrics=dict(body["best_metrics"]),
        error=body["error"], idempotency_key=None, request_hash="", compute_seconds=body["compute_seconds"],
        cost=body["cost"], cancel_requested=body["cancel_requested"], preempt_requested=False,
        compute_size=body["compute_size"], priority=body["priority"], parent_run_id=body["parent_run_id"],
        sweep=body["sweep"], trial=body["trial"])


def _change_of(run_id: str, body: dict[str, Any]) -> e.StatusChange:
    return e.StatusChange(run_id, body["status"], body["reason"], datetime.fromisoformat(body["at"]), body["attempt"])


def _prediction_of(row: dict[str, Any]) -> Prediction:
    """A validation image as the API sends it (`ValidationImagePublic`), as the run's predictions.csv gives it:
    the API's derived fields (`correct`, the label lists) are the Prediction's own properties."""
    return Prediction(row["index"], row["path"], row["true_label"], row["predicted_label"], row["score"],
                      row["true_score"], row.get("scored_label"), dict(row.get("label_scores") or {}))


def _artifact_of(run_id: str, body: dict[str, Any]) -> e.ArtifactRecord:
    return e.ArtifactRecord(run_id, body["path"], body["size"], body["sha256"],
                            datetime.fromisoformat(body["created_at"]))


def _line_of(run_id: str, body: dict[str, Any]) -> e.LogLine:
    return e.LogLine(run_id, body["seq"], datetime.fromisoformat(body["at"]), body["level"], body["message"],
                     body["attempt"])


def _at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def given(**query: Any) -> dict[str, Any]:
    """A request's query without the parameters left unset (the server's defaults apply)."""
    return {key: value for key, value in query.items() if value is not None}


# --- workspaces, experiments, computes and sizes through the API ------------------------------------------------
class WorkspacesAPI:
    """Workspaces, their experiments and computes, and the size catalog through the API, answered as the
    store's services answer them (`core.entities`, `core.sizes.SizeSpec`). An experiment's or a compute's
    `workspace_id` holds the workspace's name (the API shows no row ids but the entity's own)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def create(self, name: str, region: str, resource_group: str) -> e.Workspace:
        body = {"name": name, "region": region, "resource_group": resource_group}
        return _workspace_of(self.client.json("POST", "/workspaces", json=body))

    def workspaces(self) -> list[e.Workspace]:
        return [_workspace_of(body) for body in self.client.json("GET", "/workspaces", retry=True)]

    def get(self, name: str) -> e.Workspace:
        return _workspace_of(self.client.json("GET", f"/workspaces/{name}", retry=True))

    def delete(self, name: str, force: bool = False) -> list[str]:
        """The ids of the runs deleted with it."""
        return list(self.client.json("DELETE", f"/workspaces/{name}", params={"force": force})["runs_deleted"])

    def experiments(self, workspace: str) -> list[e.ExperimentSummary]:
        """The workspace's experiments by name, each with its number of runs and newest status (the server's)."""
        answer = self.client.json("GET", f"/workspaces/{workspace}/experiments", retry=True)
        return [_summary_of(body) for body in answer]

    def experiment(self, workspace: str, name: str) -> e.ExperimentSummary:
        return _summary_of(self.client.json("GET", f"/workspaces/{workspace}/experiments/{name}", retry=True))

    def create_compute(self, workspace: str, name: str, size: str, priority: str, kind: str,
                       address: str | None) -> e.Compute:
        body = given(name=name, size=size, priority=priority, kind=kind, address=address)
        return _compute_of(self.client.json("POST", f"/workspaces/{workspace}/computes", json=body))

    def computes(self, workspace: str) -> list[e.Compute]:
        return [_compute_of(body) for body in self.client.json("GET", f"/workspaces/{workspace}/computes",
                                                               retry=True)]

    def compute(self, workspace: str, name: str) -> e.Compute:
        return _compute_of(self.client.json("GET", f"/workspaces/{workspace}/computes/{name}", retry=True))

    def delete_compute(self, workspace: str, name: str, force: bool = False) -> list[str]:
        """The ids of the runs `force` canceled."""
        answer = self.client.json("DELETE", f"/workspaces/{workspace}/computes/{name}", params={"force": force})
        return list(answer["canceled_runs"])

    def sizes(self) -> list[tuple[SizeSpec, float]]:
        """The server's size catalog (`auto`: the server's host), each with its low-priority hourly price."""
        answer = self.client.json("GET", "/sizes", retry=True)
        return [(SizeSpec(**{f.name: body[f.name] for f in dataclasses.fields(SizeSpec)}),
                 body["price_per_hour_low_priority"]) for body in answer]


def _workspace_of(body: dict[str, Any]) -> e.Workspace:
    return e.Workspace(body["id"], body["name"], body["region"], body["resource_group"],
                       datetime.fromisoformat(body["created_at"]))


def _summary_of(body: dict[str, Any]) -> e.ExperimentSummary:
    return e.ExperimentSummary(_experiment_of(body), body["runs"], body.get("latest_status"))


def _experiment_of(body: dict[str, Any]) -> e.Experiment:
    return e.Experiment(body["id"], body["workspace"], body["name"], datetime.fromisoformat(body["created_at"]))


def _compute_of(body: dict[str, Any]) -> e.Compute:
    return e.Compute(body["id"], body["workspace"], body["name"], body["size"], body["priority"], body["kind"],
                     body["address"], body["state"], body["error"], datetime.fromisoformat(body["created_at"]),
                     datetime.fromisoformat(body["updated_at"]))
