"""Data assets from each face: the CLI uploads, lists, shows, downloads and deletes; `train --data pets`, the
SDK's `submit(data='pets:1')` and `POST /api/v1/runs` queue runs that read the asset from the artifact
store; deleting what a queued run uses is refused with one line, and an unknown asset is one line too."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from modelbuilder import Workspace
from modelbuilder.core.services import Services
from modelbuilder.sdk import data
from modelbuilder.training.prepare import prepare_data
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.cli.driver import Cli
from tests.imagery import make_image_folder

TINY = ["--architecture", "tiny", "--weights", "none", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]


def test_the_cli_uploads_lists_shows_downloads_and_deletes(cli: Cli, home: Path, tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "pets", per_label=6, odd_files=True)
    uploaded = cli("data", "upload", str(folder), "--name", "pets", "--json").json()
    assert (uploaded["ref"], uploaded["created"], uploaded["labels"]) == ("pets:1", True, {"cat": 10, "dog": 6})
    assert {s["path"] for s in uploaded["report"]["skipped"]} == {"cat/corrupt.jpg", "cat/notes.jpg"}
    again = cli("data", "upload", str(folder), "--name", "pets").ok()
    assert "Unchanged" in again.stdout
    assert "no new version" in again.stdout
    unchanged = cli("data", "upload", str(folder), "--name", "pets", "--json").json()  # corrupt.jpg listed too
    assert (unchanged["created"], unchanged["sent"], unchanged["packed_size"]) == (False, 0, 0)
    (folder / "dog" / "extra.png").write_bytes((folder / "dog" / "001.png").read_bytes())
    assert cli("data", "upload", str(folder), "--name", "pets", "--json").json()["ref"] == "pets:2"
    rows = cli("data", "list").ok().rows()
    assert rows[0][:4] == ["pets", "2", "2", "17"]
    shown = cli("data", "show", "pets:1").ok()
    assert "cat" in shown.stdout
    assert "Skipped files: 2" in shown.stdout
    assert "Duplicates within a label:" in shown.stdout
    first = cli("data", "show", "pets:1", "--json").json()["shown"]["report"]["duplicates"]
    latest = cli("data", "show", "pets", "--json").json()["shown"]["report"]["duplicates"]
    assert (first["within_label_exact"], latest["within_label_exact"]) == (0, 1)  # extra.png is a copy
    out = tmp_path / "back"
    cli("data", "download", "pets:2", "-o", str(out)).ok()
    assert (out / "dog" / "extra.png").read_bytes() == (folder / "dog" / "001.png").read_bytes()
    assert (out / "labels.tsv").read_text().count("\n") == 18  # a header and 17 images
    assert cli("data", "delete", "pets:1").ok().stdout.strip() == "Deleted pets:1: version(s) 1."
    cli("data", "show", "pets:1").user_error("Data asset 'pets' has no version 1.", "'modelbuilder data show pets'")
    cli("data", "show", "cats").user_error("no data asset 'cats'", "'modelbuilder data list'")


def test_every_face_trains_on_an_asset_and_delete_waits_for_its_runs(cli: Cli, client: TestClient,
                                                                     services: Services, tmp_path: Path,
                                                                     monkeypatch) -> None:
    folder = make_image_folder(tmp_path / "images" / "pets", per_label=4)
    cli("data", "upload", str(folder), "--name", "pets").ok()
    monkeypatch.chdir(tmp_path)  # no folder named 'pets' here: the name means the asset
    cli("train", "--data", "pets", *TINY, "--detach").ok()
    run = Workspace.get(services=services).experiment("pets").submit(data="pets:1", architecture="tiny",
                                                                     weights="none", epochs=1)
    answer = client.post("/api/v1/runs", json={"experiment": "from-api", "recipe": {"data": "pets:1",
                                                                                     "architecture": "tiny"}})
    assert answer.status_code == 201, answer.text
    runs = services.runs.list("default")
    assert len(runs) == 3
    _, folder_1 = services.data.version("default", "pets", 1)
    for queued in runs:
        assert queued.recipe["data"] == str(folder_1 / "data.tsv")  # read from the artifact store
        assert services.data.run_data(queued.id) == ("pets", 1)
    assert {r.experiment_name for r in runs} == {"pets", "from-api"}
    assert run.entity.project_name == "Pets"
    line = cli("data", "delete", "pets").user_error("is in use by run", "3 active run(s)", "modelbuilder runs cancel")
    assert "Traceback" not in line
    refused = client.delete("/api/v1/workspaces/default/data/pets")
    assert refused.status_code == 409
    assert "POST /api/v1/runs/" in refused.json()["hint"]
    for queued in runs:
        services.runs.request_cancel(queued.id)
    assert cli("data", "delete", "pets").ok()
    assert not folder_1.exists()


def test_an_unknown_asset_is_one_line_from_every_face(cli: Cli, client: TestClient, tmp_path: Path,
                                                      monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli("train", "--data", "cats:2", *TINY, "--detach").user_error("no data asset 'cats'",
                                                                   "'modelbuilder data list'")
    answer = client.post("/api/v1/runs", json={"experiment": "cats", "recipe": {"data": "cats"}})
    assert answer.status_code == 404
    assert "GET /api/v1/workspaces/default/data" in answer.json()["hint"]
    bad = client.post("/api/v1/runs", json={"experiment": "cats", "recipe": {"data": "relative/path"}})
    assert bad.status_code == 422


def test_a_manifest_uploads_its_images_with_their_labels(services: Services, tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "photos", per_label=3)
    rows = [f"{p.relative_to(folder).as_posix()}\t{'feline' if p.parent.name == 'cat' else 'canine'}"
            for p in sorted(folder.rglob("*.*"))]
    manifest = folder / "labels.tsv"
    manifest.write_text("ImageSource\tLabel\n" + "\n".join(rows) + "\n")
    uploaded = data.upload(services, manifest, "animals")
    assert uploaded.version.labels == {"canine": 3, "feline": 3}
    back, target = data.download(services, "animals", tmp_path / "back")
    assert back.version == 1
    assert (target / "labels.tsv").read_text().count("feline") == 3


def test_a_local_folder_of_the_asset_s_name_wins_for_the_cli_never_for_the_api(
        cli: Cli, client: TestClient, services: Services, tmp_path: Path, monkeypatch) -> None:
    images = make_image_folder(tmp_path / "pets", per_label=3)
    data.upload(services, images, "pets")
    monkeypatch.chdir(tmp_path)  # a folder named 'pets' is here
    cli("train", "--data", "pets", *TINY, "--detach").ok()
    answer = client.post("/api/v1/runs", json={"experiment": "from-api", "recipe": {"data": "pets"}})
    assert answer.status_code == 201, answer.text
    by_cli, by_api = sorted(services.runs.list("default"), key=lambda run: run.experiment_name != "pets")
    assert by_cli.recipe["data"] == str(images.resolve())  # the path: the CLI user means the folder here
    assert services.data.run_data(by_cli.id) is None
    assert services.data.run_data(by_api.id) == ("pets", 1)  # the API's paths are absolute: a name is an asset


def test_a_run_on_an_asset_names_its_images_as_they_were_uploaded(services: Services, tmp_path: Path) -> None:
    """An asset stores each image under its SHA-256; the data report, predictions.csv and the galleries name
    it by its path in the upload (data.tsv's Name column), so a user can find the file that was wrong."""
    folder = make_image_folder(tmp_path / "pets", per_label=5, odd_files=True)
    data.upload(services, folder, "pets")
    _, manifest = data.training_data(services, "pets:1", "default")
    assert manifest.read_text().splitlines()[0] == "ImageSource\tLabel\tName"
    prepared = prepare_data(TrainConfig(data=str(manifest), weights="none", image_size=32), tmp_path / "cache",
                            MemoryReporter())
    shown = {image.path for image in prepared.train_images + prepared.val_images}
    uploaded = {p.relative_to(folder).as_posix() for p in folder.rglob("*.*")}
    assert shown <= uploaded
    assert {"cat/000.jpg", "dog/004.jpg", "cat/cmyk.jpg"} <= shown
