"""`modelbuilder models ...`, `predict`, `serve` and `export` from a client with its own empty home, through a
`modelbuilder server` with a token (`sdk.registry`, `sdk.models` and `sdk.export` with a client,
`sdk.remote_models.ModelsAPI`): a run trained on the server once for the module is registered, listed, shown,
aliased, downloaded, predicted with and served (its MLModel.zip fetched once into the client's home, the
images scored there), explained and exported by the server; mistakes are one line with the fix; the
client's home never gets a store (before this change, each of these commands opened an empty store of its
own and answered from it)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.core.workspace import DEFAULT_REGION, DEFAULT_RESOURCE_GROUP
from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE, MAP_FILE, MODEL_FILE, ZIP_FILE
from modelbuilder.sdk import registry
from modelbuilder.sdk.client import Client
from modelbuilder.sdk.explain import overlay_name
from modelbuilder.sdk.models import Model
from modelbuilder.sdk.remote_models import MODEL_CACHE
from modelbuilder.training.explain import METHODS
from tests.completed import TrainedRun
from tests.imagery import make_image_folder
from tests.processes import TAG_ENV, end_tagged

from .conftest import TOKEN, LiveServer, client_env, free_port, run_cli, server_env
from .test_model_server import _serve

pytestmark = pytest.mark.slow

Cli = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Remote:
    server: LiveServer
    run_id: str
    images: Path  # the folder the run trained on (cat/, dog/), on the client's side
    home: Path  # the client's home
    env: dict[str, str]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A token server (with its agent) and a tiny run it trained from a client's upload: 2 labels x 6 images
    of 32 px, architecture tiny, no pretrained weights, 1 epoch."""
    root = tmp_path_factory.mktemp("remote-models")
    tag = uuid.uuid4().hex  # this module's server outlives each test: its own net for its workers
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelbuilder", "server", "--host", "127.0.0.1", "--port", str(port), "--token",
         TOKEN], env={**server_env(root / "server-home"), TAG_ENV: tag}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    server = LiveServer(f"http://127.0.0.1:{port}", process, root / "server-home")
    try:
        _wait_until_up(server)
        images = make_image_folder(root / "client-files" / "pets", per_label=6)
        home = root / "client-home"
        env = {**client_env(server.url, home), TAG_ENV: tag}
        run_cli(env, root, "data", "upload", str(images), "--name", "pets")
        trained = run_cli(env, root, "train", "--data", "pets", "--architecture", "tiny", "--weights", "none",
                       "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--output", "trained")
        assert "Done (completed)" in trained.stdout, trained.stdout
        found = re.search(r"Run (run-[0-9a-f]{12})", trained.stdout)
        assert found, trained.stdout
        yield Remote(server, found.group(1), images, home, env)
    finally:
        server.stop()
        end_tagged(tag)


def _wait_until_up(server: LiveServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited {server.process.returncode}: {server.stop()}")
        try:
            httpx.get(f"{server.url}/api/v1/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"server did not answer within {timeout} s: {server.stop()}")


def test_models_read_through_the_api_are_the_models_the_store_gives(client: TestClient, services: Services,
                                                                    completed_run: str, trained: TrainedRun,
                                                                    tmp_path: Path) -> None:
    def shown(model: e.RegisteredModel) -> tuple[object, ...]:  # the row's ids are not in the API's answer
        return model.name, model.created_at, model.updated_at, model.versions, model.aliases

    with Client(str(client.base_url), transport=client._transport) as api:  # noqa: SLF001 - the in-process server
        first = registry.register(services, completed_run, "pets", client=api)
        second = registry.register(services, completed_run, "pets", alias="production", client=api)
        assert (first.version, second.version, second.aliases) == (1, 2, ("production",))
        assert [shown(m) for m in registry.models(services, client=api)] == [shown(m) for m in
                                                                             registry.models(services)]
        assert shown(registry.show(services, "pets", client=api)) == shown(registry.show(services, "pets"))
        for reference in ("pets", "pets:1", "pets:production"):
            assert registry.resolve(services, reference, client=api) == registry.resolve(services, reference)
        moved = registry.set_alias(services, "pets:1", "production", client=api)
        assert moved == registry.resolve(services, "pets:production")
        registry.remove_alias(services, "pets", "production", client=api)
        assert registry.show(services, "pets").aliases == {}
        _, placed = registry.download(services, "pets:2", tmp_path / "fetched", client=api)
        cached = registry.model_zip(services, second, client=api)
        image = trained.data / "cat" / "000.jpg"
        local = Model("pets:2", services=services).predict(image)
        assert Model("pets:2", services=services, client=api).predict(image) == local
        assert [m.name for m in Model.registered(services=services, client=api)] == ["pets"]
    assert sorted(placed) == sorted(registry.download(services, "pets:2", tmp_path / "copied")[1])
    assert cached.read_bytes() == registry.model_zip(services, second).read_bytes()
    assert cached.is_relative_to(services.settings.resolved_home / MODEL_CACHE)

    services.workspaces.create("lab", DEFAULT_REGION, DEFAULT_RESOURCE_GROUP)
    services.workspaces.use_workspace("lab")  # a client acts in the workspace chosen here, as a local command
    with Client(str(client.base_url), transport=client._transport) as api:  # noqa: SLF001 - the in-process server
        assert registry.models(services, client=api) == []
        assert [m.name for m in registry.models(services, "default", client=api)] == ["pets"]


@pytest.fixture
def cli(remote: Remote, tmp_path: Path) -> Iterator[Cli]:
    """The CLI of the client, run in this test's folder; afterwards its home still holds no store."""
    yield lambda *args, rc=0: run_cli(remote.env, tmp_path, *args, rc=rc)
    assert not (remote.home / "modelbuilder.db").exists()  # every command went through the server


def test_register_list_show_alias_and_download(remote: Remote, cli: Cli, tmp_path: Path) -> None:
    run_id = remote.run_id
    assert f"Registered {run_id} as pets:1." in cli("models", "register", run_id, "--name", "pets").stdout
    second = json.loads(cli("models", "register", run_id, "--name", "pets", "--alias", "staging",
                               "--json").stdout)
    assert (second["model"], second["version"], second["run_id"], second["aliases"]) == ("pets", 2, run_id,
                                                                                          ["staging"])
    assert "accuracy" in second["metrics"]

    listed = cli("models", "list").stdout
    assert "Registered models of default" in listed
    assert re.search(r"pets\s+│\s+2\s+│\s+2\s+│", listed), listed
    assert "staging -> 2" in listed
    [model] = [m for m in json.loads(cli("models", "list", "--json").stdout) if m["name"] == "pets"]
    assert [v["version"] for v in model["versions"]] == [2, 1]
    assert model["aliases"] == {"staging": 2}

    shown = cli("models", "show", "pets").stdout
    assert "Model pets in default: 2 version(s)" in shown
    assert shown.count(run_id) == 2

    assert f"pets:production is now version 1 (run {run_id})." in cli("models", "alias", "pets:1",
                                                                         "production").stdout
    assert "pets:staging2 is now version 2" in cli("models", "alias", "pets:staging", "staging2").stdout
    assert "Removed the alias staging" in cli("models", "alias", "pets", "staging", "--remove").stdout
    assert json.loads(cli("models", "show", "pets", "--json").stdout)["aliases"] == {"production": 1,
                                                                                        "staging2": 2}

    downloaded = cli("models", "download", "pets:production", "--output", "fetched").stdout
    assert f"Wrote pets:1 (run {run_id}) to fetched" in downloaded
    fetched = tmp_path / "fetched"
    assert {ZIP_FILE, MODEL_FILE, MAP_FILE} <= {p.name for p in fetched.iterdir()}
    assert (fetched / "Pets.ConsoleApp").is_dir()
    web_api = (fetched / "Pets.WebApi" / "main.py").read_text()
    assert re.search(r"MODEL_VERSION = .* or ['\"]1['\"]", web_api)  # the projects carry the version's number


def test_predict_serve_and_explain_by_alias(remote: Remote, cli: Cli,
                                                                 tmp_path: Path) -> None:
    cli("models", "register", remote.run_id, "--name", "dogs", "--alias", "production")
    image = remote.images / "dog" / "001.png"
    one = json.loads(cli("predict", "dogs:production", str(image), "--format", "json").stdout)
    assert one["image"] == str(image)
    assert one["prediction"] in {"cat", "dog"}
    assert set(one["score"]) == {"cat", "dog"}
    cached = remote.home / MODEL_CACHE / remote.run_id / ZIP_FILE
    assert cached.is_file()
    fetched_at = cached.stat().st_mtime_ns

    scored = cli("predict", "dogs:production", str(remote.images), "--output", "scores.csv").stdout
    assert "Scored 12 images" in scored
    with (tmp_path / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12  # one row per image
    assert {Path(row["image"]).parent.name for row in rows} == {"cat", "dog"}
    assert all(row["prediction"] in {"cat", "dog"} and not row["error"] for row in rows)
    by_run = json.loads(cli("predict", remote.run_id, str(image), "--format", "json").stdout)
    assert by_run["score"] == one["score"]  # the same model, named by its run
    with _serve(remote.home, "dogs:production", env={**remote.env, "MODELBUILDER_HOME": str(remote.home)}) as url:
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert (health["model"], health["model_version"]) == ("dogs", "1")
        served = httpx.post(f"{url}/predict", files={"image": (image.name, image.read_bytes())}, timeout=60,
                            headers={"Authorization": f"Bearer {TOKEN}"})  # serve's token: MODELBUILDER_TOKEN
        assert served.json()["prediction"] == one["prediction"]
    assert cached.stat().st_mtime_ns == fetched_at  # fetched once: all read the copy in the client's home

    explained = cli("predict", "dogs:production", str(image), "--explain", "why", "--label", "cat")
    assert "Explained 'cat'" in explained.stderr  # made by the server, from the run's checkpoint there
    for method in METHODS:
        with PILImage.open(tmp_path / "why" / overlay_name(image.stem, method)) as overlay:
            assert overlay.size == (32, 32)  # the image's size


def test_export_of_a_run_is_made_by_the_server(remote: Remote, cli: Cli, tmp_path: Path) -> None:
    done = cli("export", remote.run_id, "--output", "int8").stdout
    assert "validation accuracy" in done
    assert "int8 is" in done
    for name in (INT8_MODEL_FILE, INT8_ZIP_FILE):
        assert (tmp_path / "int8" / name).stat().st_size > 0
    listed = json.loads(httpx.get(f"{remote.server.url}/api/v1/runs/{remote.run_id}/artifacts",
                                  headers={"Authorization": f"Bearer {TOKEN}"}).text)
    assert {INT8_MODEL_FILE, INT8_ZIP_FILE} <= {a["path"] for a in listed}  # written into the run's folder there
    in_place = cli("export", remote.run_id).stdout
    assert f"in the folder of {remote.run_id} on the server" in in_place


def test_bad_names_versions_and_options_are_one_line_with_the_fix(remote: Remote, cli: Cli) -> None:
    cli("models", "register", remote.run_id, "--name", "cats")
    image = str(remote.images / "cat" / "000.jpg")
    missing = cli("models", "show", "nobody", rc=2).stderr
    assert "no registered model 'nobody'" in missing
    assert "Fix:" in missing
    assert "has no version 9" in cli("models", "download", "cats:9", "--output", "x", rc=2).stderr
    assert "has no alias 'gone'" in cli("predict", "cats:gone", image, rc=2).stderr
    assert "is not valid" in cli("models", "show", "c", rc=2).stderr  # refused before any request
    assert "neither a run id, a registered model nor an existing file" in cli("predict", "nobody", image,
                                                                               rc=2).stderr
    assert "run-000000000000" in cli("models", "register", "run-000000000000", "--name", "cats", rc=2).stderr
    assert "does not exist" in cli("models", "list", "--workspace", "elsewhere", rc=2).stderr
    assert "has no label 'zebra'" in cli("predict", "cats", image, "--explain", "out", "--label", "zebra",
                                         rc=2).stderr
    assert "--validation-data" in cli("export", remote.run_id, "--validation-data", str(remote.images),
                                         rc=2).stderr


SDK_SCRIPT = """
import json, sys
from modelbuilder import Model, Workspace

images, out, earlier = sys.argv[1:4]
ws = Workspace.get()  # MODELBUILDER_SERVER_URL and no store: every object acts through the server
run = ws.experiment("through-sdk").submit(data=images, architecture="tiny", weights="none", epochs=1,
                                          image_size=32, batch_size=4)
statuses = []
run.wait(on_event=lambda event: statuses.append(event.status.status) if event.kind == "status" else None)
report = run.result_metrics()
wrong_or_right = run.errors(include_correct=True)
print(json.dumps({
    "status": run.status, "statuses": statuses, "history": [c.status for c in run.history()],
    "accuracy": report["accuracy"], "num_images": report["num_images"],
    "val_accuracy": run.metrics()["val_accuracy"], "logs": len(run.logs()),
    "validation": len(wrong_or_right), "summary": bool(run.data_report().get("summary")),
    "thumbnail": run.thumbnail("predictions", wrong_or_right[0].index)[:2].hex(),
    "downloaded": sorted(run.download(out)), "listed": [r.id for r in ws.runs()],
    "experiments": [x.name for x in ws.experiments()], "computes": [c.name for c in ws.computes.list()],
    "earlier": ws.run(earlier).status, "workspace": ws.name,
    "predicted": Model(run.id).predict(images + "/cat/001.png").prediction,
}))
"""


def test_the_sdk_s_objects_act_through_the_server(remote: Remote, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SDK_SCRIPT, str(remote.images), str(tmp_path / "out"),
                           remote.run_id], env=remote.env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == "Completed"
    assert seen["history"][0] == "Queued"
    assert seen["history"][-1] == "Completed"
    assert seen["statuses"][-1] == "Completed"  # followed through the API to its end
    assert 0.0 <= seen["accuracy"] <= 1.0
    assert seen["validation"] == seen["num_images"] > 0  # every validation image, right or wrong
    assert len(seen["val_accuracy"]) == 1
    assert seen["logs"] > 0
    assert seen["summary"]
    assert seen["thumbnail"] == "ffd8"  # a JPEG
    assert {ZIP_FILE, MODEL_FILE, MAP_FILE} <= set(seen["downloaded"])
    assert (tmp_path / "out" / ZIP_FILE).is_file()
    listed_id = seen["listed"][0]
    assert remote.run_id in seen["listed"]
    assert listed_id != remote.run_id
    assert "through-sdk" in seen["experiments"]
    assert seen["computes"] == ["local"]
    assert (seen["earlier"], seen["workspace"]) == ("Completed", "default")
    assert seen["predicted"] in {"cat", "dog"}
    assert not (remote.home / "modelbuilder.db").exists()  # the objects opened no store of the client's
