"""Training through a server's REST API, for a client that shares no store and no folder with it
(`sdk.client`): submit a run on a data asset, follow it, and fetch its result bundle.

    with Client(url, token) as client:
        run = remote.submit(client, {"data": "pets:1", "epochs": 3})
        run = remote.follow(client, run["id"], on_update=print)
        remote.download(client, run["id"], "out/")
"""

from __future__ import annotations

import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.core.workspace import DEFAULT_WORKSPACE
from modelbuilder.errors import InvalidInput
from modelbuilder.sdk import ingest
from modelbuilder.sdk.client import Client
from modelbuilder.sdk.submit import DEFAULT_EXPERIMENT, default_experiment, is_data_asset

POLL_S = 1.0


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
    if body.get("validation_data") is not None:
        raise InvalidInput("Separate validation data cannot be sent to a server yet.",
                           "leave out --validation-data (a share of each label is held out).")
    body["data"] = str(data)
    return body


def submit(client: Client, settings: Mapping[str, Any], *, workspace: str | None = None,
           experiment: str | None = None, compute: str = "local", idempotency_key: str | None = None
           ) -> dict[str, Any]:
    """Queue a run on the server; its answer (RunPublic) comes back."""
    recipe = recipe_body(settings)
    asset = names.data_ref(recipe["data"])[0]
    request = {"workspace": workspace or DEFAULT_WORKSPACE, "compute": compute, "recipe": recipe,
               "experiment": experiment or (default_experiment(asset) if len(asset) >= 3 else DEFAULT_EXPERIMENT)}
    if idempotency_key:
        request["idempotency_key"] = idempotency_key
    return dict(client.json("POST", "/runs", json=request))


def follow(client: Client, run_id: str, on_update: Callable[[dict[str, Any]], None] | None = None,
           poll_s: float = POLL_S, timeout: float | None = None) -> dict[str, Any]:
    """Ask for the run every `poll_s` until it ends; `on_update` gets each answer that differs from the last."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last: tuple[Any, ...] | None = None
    while True:
        run = dict(client.json("GET", f"/runs/{run_id}", retry=True))
        seen = (run["status"], repr(run.get("progress")), run.get("attempt"))
        if seen != last and on_update is not None:
            on_update(run)
        last = seen
        if run["terminal"]:
            return run
        if deadline is not None and time.monotonic() > deadline:
            return run
        time.sleep(poll_s)


def download(client: Client, run_id: str, output: str | Path) -> list[str]:
    """The run's result bundle (MLModel.zip, bestModel.onnx, bestModelMap.json, the projects) into `output`."""
    target = Path(output).expanduser()
    with tempfile.TemporaryDirectory(prefix="modelbuilder-bundle-") as tmp:
        bundle = client.download(f"/runs/{run_id}/bundle", Path(tmp) / "bundle.zip")
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
    return sorted({name.split("/", 1)[0] for name in (i.filename for i in infos)})
