"""From a second machine's point of view: a client process with its own empty MODELBUILDER_HOME talks to a
`modelbuilder server` on 127.0.0.1 with a token, sharing no folder with it. It uploads a small set as a data
asset, trains on it through the CLI, downloads the result (and again with `runs download`); its home never
gets a store. Given a local folder, `train` uploads it as an asset first (here: unchanged, so nothing is
sent)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.imagery import make_image_folder

from .conftest import TOKEN, LiveServer, server_env

pytestmark = pytest.mark.slow


def test_a_client_with_its_own_home_uploads_trains_and_downloads(start_server: Callable[..., LiveServer],
                                                                  tmp_path: Path) -> None:
    server = start_server("--token", TOKEN)
    folder = make_image_folder(tmp_path / "client-files" / "pets", per_label=6)
    client_home = tmp_path / "client-home"
    env = {**server_env(client_home), "MODELBUILDER_SERVER_URL": server.url, "MODELBUILDER_TOKEN": TOKEN}
    workdir = tmp_path / "client-work"
    workdir.mkdir()

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "modelbuilder", *args], env=env, cwd=workdir,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout, done.stderr, server.stop()[-3000:])
        return done

    uploaded = client("data", "upload", str(folder), "--name", "pets")
    assert "as pets:1: 12 images, 2 labels" in uploaded.stdout
    trained = client("train", "--data", "pets", "--architecture", "tiny", "--weights", "none", "--epochs", "1",
                     "--image-size", "32", "--batch-size", "4", "--output", "out")
    assert "Done (completed)" in trained.stdout  # the summary and data report a local training prints
    assert "Data report" in trained.stdout
    run_id = trained.stdout.split("Run ", 1)[1].split()[0]
    assert f"{run_id}  Completed" in client("runs", "show", run_id).stdout
    client("runs", "download", run_id, "-o", "fetched")  # the same bundle again, through `runs download`
    assert (workdir / "fetched" / "MLModel.zip").is_file()
    with zipfile.ZipFile(workdir / "out" / "MLModel.zip") as package:
        assert {"pipeline.json", "bestModel.onnx", "bestModelMap.json"} <= set(package.namelist())
    assert (workdir / "out" / "Pets.ConsoleApp").is_dir()
    assert not (client_home / "modelbuilder.db").exists()  # everything went through the server
    assert not any((client_home / "packs").iterdir())  # the packed upload is gone once sent
    by_path = client("train", "--data", str(folder), "--epochs", "1", "--detach")  # a local path: uploaded first
    assert "is the data asset pets:1" in by_path.stderr
    assert "unchanged, not sent again" in by_path.stderr
    assert "queued on compute local" in by_path.stdout
    (workdir / "space.yaml").write_text("weight_decay: uniform(0.01, 0.1)\n")  # read here, sent as the space
    swept = client("train", "--data", "pets", "--search", "space.yaml", "--max-trials", "2", "--sampling", "random",
                   "--detach")
    sweep_id = swept.stdout.split("Run ", 1)[1].split()[0]
    on_server = httpx.get(f"{server.url}/api/v1/runs/{sweep_id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert on_server["sweep"]["space"] == {"weight_decay": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}}
    assert (on_server["sweep"]["max_trials"], on_server["sweep"]["sampling"]) == (2, "random")
    client("runs", "cancel", sweep_id)
    (workdir / "recipe.yaml").write_text(  # its data path relative to its folder; the flags win over it
        f"data: {os.path.relpath(folder, workdir)}\narchitecture: tiny\nweights: none\nepochs: 1\nema_decay: 0.5\n")
    from_file = client("train", "--recipe", "recipe.yaml", "--epochs", "2", "--detach")
    assert "is the data asset pets:1" in from_file.stderr  # the same images: the version already there
    file_run = from_file.stdout.split("Run ", 1)[1].split()[0]
    sent = httpx.get(f"{server.url}/api/v1/runs/{file_run}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert {key: sent["recipe"][key] for key in ("architecture", "weights", "epochs", "ema_decay")} == {
        "architecture": "tiny", "weights": "none", "epochs": 2, "ema_decay": 0.5}
    client("runs", "cancel", file_run)
    model_file = subprocess.run([sys.executable, "-m", "modelbuilder", "train", "--data", "pets", "--from-model",
                                 str(workdir / "out" / "MLModel.zip")], capture_output=True, text=True, env=env,
                                cwd=workdir, timeout=120)
    assert model_file.returncode == 2  # the server never unpickles a client's file: one line, and the way
    assert model_file.stderr.count("\n") == 1
    assert "--from-run" in model_file.stderr
    refused = subprocess.run([sys.executable, "-m", "modelbuilder", "data", "list"], capture_output=True, text=True,
                             env={**env, "MODELBUILDER_TOKEN": "wrong-token-0123456789"}, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "needs its token" in refused.stderr
    assert os.listdir(server.home / "artifacts" / "data")  # the asset lives under the server's artifact root
