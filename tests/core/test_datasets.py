"""Data assets in the store (SQLite and PostgreSQL): versions numbered 1, 2, ..., the same content makes no
new version, concurrent additions never share a number, and deleting what an active run trains on is refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event

from modelbuilder.core import entities as e
from modelbuilder.core.datasets import DataAssetService
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService
from modelbuilder.errors import Conflict, NotFound


@pytest.fixture
def assets(store: Store, tmp_path: Path, workspaces: WorkspaceService) -> DataAssetService:
    workspaces.ensure_default()
    return DataAssetService(store, tmp_path / "artifacts")


def add(assets: DataAssetService, digest: str, name: str = "pets") -> tuple[e.DataVersion, bool]:
    staged = assets.staging_folder()
    (staged / "data.tsv").write_text(f"ImageSource\tLabel\n{digest}.png\tcat\n")
    return assets.add_version("default", name, staged, digest=digest * 64 if len(digest) == 1 else digest,
                              images=1, size=10, labels={"cat": 1, "dog": 1}, report={"summary": []})


def test_versions_are_numbered_and_kept_in_their_folders(assets: DataAssetService) -> None:
    first, made = add(assets, "a")
    second, made_again = add(assets, "b")
    assert (first.version, made, second.version, made_again) == (1, True, 2, True)
    asset = assets.get("default", "pets")
    assert [v.version for v in asset.versions] == [2, 1]
    latest, folder = assets.version("default", "pets")
    assert latest.version == 2
    assert (folder / "data.tsv").read_text().startswith("ImageSource")
    assert folder.is_relative_to(assets.root)
    assert not list((assets.root / ".staging").iterdir())
    assert assets.version("default", "pets", 1)[0].digest == "a" * 64


def test_the_same_content_as_the_latest_makes_no_new_version(assets: DataAssetService) -> None:
    add(assets, "a")
    again, made = add(assets, "a")
    assert (again.version, made) == (1, False)
    assert len(assets.get("default", "pets").versions) == 1
    assert not list((assets.root / ".staging").iterdir())  # the staged copy is gone


def test_concurrent_uploads_get_distinct_numbers(assets: DataAssetService) -> None:
    numbers: list[int] = []
    errors: list[BaseException] = []

    def upload(k: int) -> None:
        try:
            numbers.append(add(assets, f"{k:064x}")[0].version)
        except BaseException as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=upload, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


def test_delete_is_refused_while_an_active_run_trains_on_the_version(assets: DataAssetService, runs: RunService,
                                                                      recipe: dict[str, object]) -> None:
    add(assets, "a")
    add(assets, "b")
    with pytest.raises(NotFound, match="pets:7 no longer exists"):
        runs.submit("default", "pets", "local", recipe, data_asset=("pets", 7))
    assert runs.list("default") == []  # the run and its link are one transaction: no run without its data
    run = runs.submit("default", "pets", "local", recipe, data_asset=("pets", 1))
    assert assets.run_data(run.id) == ("pets", 1)
    with pytest.raises(Conflict, match=f"in use by run {run.id}"):
        assets.delete("default", "pets", 1)
    with pytest.raises(Conflict):
        assets.delete("default", "pets")
    assert assets.delete("default", "pets", 2) == [2]  # the version no run uses goes
    runs.request_cancel(run.id)  # a queued run ends at once
    assert runs.get(run.id).status == e.CANCELED
    folder = assets.version("default", "pets", 1)[1]
    assert assets.delete("default", "pets") == [1]
    assert not folder.exists()
    with pytest.raises(NotFound, match="no data asset 'pets'"):
        assets.get("default", "pets")


def test_unknown_names_and_versions_are_not_found(assets: DataAssetService) -> None:
    with pytest.raises(NotFound, match="no data asset 'cats'"):
        assets.version("default", "cats")
    add(assets, "a")
    with pytest.raises(NotFound, match="has no version 7"):
        assets.version("default", "pets", 7)
    with pytest.raises(NotFound, match="has no version 7"):
        assets.delete("default", "pets", 7)
    assert [(a.workspace, a.name) for a in assets.list_all()] == [("default", "pets")]


def test_the_list_across_workspaces_holds_each_asset_s_latest_version(assets: DataAssetService) -> None:
    add(assets, "a")
    add(assets, "b")
    add(assets, "c", name="birds")
    assets.delete("default", "birds", 1)  # an asset whose every version was deleted stays, empty
    listed = {a.name: a for a in assets.list_all()}
    assert listed["pets"].workspace == "default"
    assert listed["pets"].latest == assets.version("default", "pets")[0]  # version 2, with its report
    assert listed["birds"].latest is None


def test_a_worker_finds_the_run_s_data_under_its_own_artifact_root(assets: DataAssetService, store: Store,
                                                                    runs: RunService, recipe: dict[str, object],
                                                                    tmp_path: Path) -> None:
    add(assets, "a")
    assert assets.run_data_file(runs.submit("default", "pets", "local", recipe).id) is None  # a run on a path
    run = runs.submit("default", "pets", "local", recipe, data_asset=("pets", 1))
    elsewhere = DataAssetService(store, tmp_path / "mounted-elsewhere")  # another host's mount of the root
    found = elsewhere.run_data_file(run.id)
    assert found is not None
    assert found.is_relative_to(tmp_path / "mounted-elsewhere")
    here = assets.version("default", "pets", 1)[1]
    assert found.relative_to(elsewhere.root) == here.relative_to(assets.root) / "data.tsv"


def test_a_workspace_s_list_reads_every_asset_and_version_in_the_same_few_statements(
        assets: DataAssetService, store: Store) -> None:
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    def listing() -> tuple[list[e.DataAsset], int]:
        statements.clear()
        event.listen(store.engine, "before_cursor_execute", count)
        try:
            return assets.list("default"), len(statements)
        finally:
            event.remove(store.engine, "before_cursor_execute", count)

    add(assets, "a")
    one, few = listing()
    assert [(a.name, [v.version for v in a.versions]) for a in one] == [("pets", [1])]
    for digest in "bcd":
        add(assets, digest)
        add(assets, digest, name=f"set-{digest}")
    add(assets, "e", name="birds")
    assets.delete("default", "birds", 1)  # an asset with no version left is listed, empty
    many, counted = listing()
    assert counted == few  # it was one query per asset more
    assert [(a.name, [v.version for v in a.versions]) for a in many] == [
        ("birds", []), ("pets", [4, 3, 2, 1]), ("set-b", [1]), ("set-c", [1]), ("set-d", [1])]
    assert many[1].versions[0] == assets.version("default", "pets")[0]  # with its report, as `version` reads it
