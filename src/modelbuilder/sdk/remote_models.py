"""Registered models, a run's model file and its int8 export through a server's REST API, for a client that
shares no store with it (`sdk.client`), answered as the store's services answer (`core.entities`,
`results.quantize.Int8Export`), so every face renders both alike; a run's MLModel.zip is fetched once into
the client's home and scored there.

    with Client(url, token) as client:
        models = remote_models.ModelsAPI(client)
        version = models.register("default", "run-0123456789ab", "pets", alias="production")
        zip_path = models.model_file(version.run_id, home)
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuilder.core import entities as e
from modelbuilder.core.artifacts import file_sha256
from modelbuilder.errors import DataError, InvalidInput, NotFound
from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE, ZIP_FILE
from modelbuilder.sdk import results
from modelbuilder.sdk.client import Client, RemoteError
from modelbuilder.sdk.remote import RunsAPI, fetch_zip, given

if TYPE_CHECKING:
    from modelbuilder.results.quantize import Int8Export

EXPORT_TIMEOUT_S = 3600.0  # an int8 export on the server takes from seconds to a few minutes
MODEL_CACHE = "models"  # under a client's home: each run's MLModel.zip, fetched once, in a folder of its run id


@dataclass(frozen=True)
class ServerExplanation:
    """An explanation made by the server (`POST /runs/{id}/explain`): what `training.explain.Explanation` gives
    a face (the scores, the label explained, each method's overlay as a PNG), without the heatmaps' arrays."""

    labels: list[str]
    score: list[float]
    prediction: str
    label: str
    overlays: dict[str, bytes]
    size: tuple[int, int]  # (width, height) of the image, and of every overlay

    @property
    def scores(self) -> dict[str, float]:
        return dict(zip(self.labels, self.score, strict=True))


class ModelsAPI:
    """Registered models, a run's MLModel.zip and its int8 export through the API, answered as the store's
    services answer (`core.entities`, `results.quantize.Int8Export`), so every face renders both alike."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def list_models(self, workspace: str) -> list[e.RegisteredModel]:
        return [_model_of(body) for body in self.client.json("GET", _models(workspace), retry=True)]

    def get(self, workspace: str, name: str) -> e.RegisteredModel:
        return _model_of(self.client.json("GET", f"{_models(workspace)}/{name}", retry=True))

    def find(self, workspace: str, name: str) -> e.RegisteredModel | None:
        """The model, or None when the workspace has none of that name (a missing workspace is its own error)."""
        try:
            return self.get(workspace, name)
        except RemoteError as error:
            if error.http_status != NotFound.http_status:
                raise
        self.client.json("GET", f"/workspaces/{workspace}", retry=True)
        return None

    def version(self, workspace: str, name: str, which: int | str | None = None) -> e.ModelVersion:
        """A version by number, by alias (a str), or the latest (None)."""
        if which is None:
            latest = self.get(workspace, name).latest
            if latest is None:
                raise NotFound(f"Model {name!r} has no versions.", "register a run under this name.")
            return latest
        return _version_of(self.client.json("GET", f"{_models(workspace)}/{name}/versions/{which}", retry=True))

    def register(self, workspace: str, run_id: str, name: str, alias: str | None = None) -> e.ModelVersion:
        body = given(run_id=run_id, name=name, alias=alias)
        return _version_of(self.client.json("POST", _models(workspace), json=body))

    def set_alias(self, workspace: str, name: str, alias: str, version: int) -> e.ModelVersion:
        answer = self.client.json("PUT", f"{_models(workspace)}/{name}/aliases/{alias}", json={"version": version})
        return _version_of(answer)

    def remove_alias(self, workspace: str, name: str, alias: str) -> None:
        self.client.request("DELETE", f"{_models(workspace)}/{name}/aliases/{alias}")

    def download(self, workspace: str, version: e.ModelVersion, output: str | Path) -> dict[str, Path]:
        """The version's assets and generated projects (carrying its number) into `output`, by name."""
        return fetch_zip(self.client, f"{_models(workspace)}/{version.model}/versions/{version.version}/download",
                          output)

    def model_file(self, run_id: str, home: Path) -> Path:
        """The run's MLModel.zip, fetched from the server the first time (its SHA-256 checked against the run's
        artifact list) into `home`/MODEL_CACHE/RUN_ID, and read from there afterwards: a run's result never
        changes once written."""
        target = home / MODEL_CACHE / run_id / ZIP_FILE
        if target.is_file():
            return target
        listed = {a.path: a for a in RunsAPI(self.client).artifacts(run_id)}
        if ZIP_FILE not in listed:
            raise results.no_results(RunsAPI(self.client).get(run_id))
        partial = target.with_name(f".{uuid.uuid4().hex}.partial")  # two commands fetching at once: two files
        try:
            self.client.download(f"/runs/{run_id}/artifacts/{ZIP_FILE}", partial)
            if file_sha256(partial) != listed[ZIP_FILE].sha256:
                raise DataError(f"The {ZIP_FILE} of run {run_id} arrived damaged (its SHA-256 differs).",
                                "try again.")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def explain(self, run_id: str, image: bytes, label: str | None = None, filename: str = "image"
                ) -> ServerExplanation:
        """Heatmaps of where the run's network finds `label` (default: its prediction) in `image`, made by the
        server from the run's checkpoint, which stays there."""
        answer = self.client.json("POST", f"/runs/{run_id}/explain", params=given(label=label),
                                  files={"file": (filename, image)})
        return ServerExplanation(answer["labels"], answer["score"], answer["prediction"], answer["label"],
                                 {m: base64.b64decode(png) for m, png in answer["overlays"].items()},
                                 (answer["width"], answer["height"]))

    def explain_image(self, run_id: str, image: Any, label: str | None = None) -> ServerExplanation:
        """`explain` of an image given as a file's path or its bytes (what can be sent)."""
        if isinstance(image, bytes):
            return self.explain(run_id, image, label)
        if not isinstance(image, str | Path) or not Path(image).expanduser().is_file():
            raise InvalidInput(f"{str(image)[:200]!r} is not an image file.",
                               "give the path of one image file (or its bytes) to explain through a server.")
        path = Path(image).expanduser()
        return self.explain(run_id, path.read_bytes(), label, path.name)

    def export_int8(self, run_id: str, calibration_images: int, output: str | Path | None = None) -> Int8Export:
        """The run's int8 export, made on the server into the run's folder (POST /runs/{id}/export); with
        `output`, its two files are fetched into that folder too. The answer's paths are the local copies, else
        the files' paths in the run's folder."""
        # Deliberately here, as in `sdk.export`: the quantizer's module imports onnx and onnxruntime's quantization
        # tools (about 0.5 s), which only an export needs.
        from modelbuilder.results.quantize import Int8Export

        answer = self.client.json("POST", f"/runs/{run_id}/export", timeout=EXPORT_TIMEOUT_S,
                                  json={"quantize": "int8", "calibration_images": calibration_images})
        paths = {Path(a["path"]).name: Path(a["path"]) for a in answer["artifacts"]}
        if output is not None:
            folder = Path(output).expanduser().resolve()
            paths = {name: self.client.download(f"/runs/{run_id}/artifacts/{path.as_posix()}", folder / name)
                     for name, path in paths.items()}
        return Int8Export(
            onnx=paths[INT8_MODEL_FILE], package=paths[INT8_ZIP_FILE], images=answer["images"],
            calibration_images=answer["calibration_images"], float_accuracy=answer["float_accuracy"],
            int8_accuracy=answer["int8_accuracy"], float_ms_per_image=answer["float_ms_per_image"],
            int8_ms_per_image=answer["int8_ms_per_image"], float_bytes=answer["float_bytes"],
            int8_bytes=answer["int8_bytes"], reduce_range=answer["weight_bits"] < 8,
            calibration=answer["calibration"], calibration_scores=answer["calibration_scores"])


def _models(workspace: str) -> str:
    return f"/workspaces/{workspace}/models"


def _version_of(body: dict[str, Any]) -> e.ModelVersion:
    """A version as the API sends it (ModelVersionPublic), as the entity the store gives."""
    return e.ModelVersion(body["model"], body["version"], body["run_id"], dict(body["metrics"]),
                          datetime.fromisoformat(body["created_at"]), tuple(body["aliases"]))


def _model_of(body: dict[str, Any]) -> e.RegisteredModel:
    """A registered model as the API sends it (RegisteredModelPublic); `workspace_id` holds the workspace's name
    and the row's id, which the API does not show, is left empty."""
    return e.RegisteredModel("", body["workspace"], body["name"], datetime.fromisoformat(body["created_at"]),
                             datetime.fromisoformat(body["updated_at"]),
                             tuple(_version_of(v) for v in body["versions"]), dict(body["aliases"]))
