"""Registered models through the application layer (sdk/registry.py) and the SDK's `Model`: a finished
run registered as versions 1, 2, an alias, `name:version` / `name:alias` references wherever a model
is named, and a download whose generated projects carry the version's number."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, InvalidInput, NotFound
from modelbuilder.results.files import ZIP_FILE
from modelbuilder.sdk import Model, registry
from modelbuilder.sdk.models import model_file
from tests.completed import TrainedRun, make_completed_run


@pytest.fixture
def services(home: Path) -> Iterator[Services]:
    with Services() as opened:
        yield opened


def test_register_resolve_and_download(services: Services, trained: TrainedRun, tmp_path: Path):
    first, second = make_completed_run(services, trained), make_completed_run(services, trained)
    v1 = Model.register(first, "pets", services=services)
    v2 = Model.register(second, "pets", alias="production", services=services)
    assert (v1.ref, v2.ref, v2.aliases) == ("pets:1", "pets:2", ("production",))
    assert v1.metrics["accuracy"] == pytest.approx(float(trained.metrics["accuracy"]))  # type: ignore[arg-type]
    assert [m.name for m in Model.registered(services=services)] == ["pets"]

    assert model_file(services, "pets:1") == services.artifacts.run_dir(first) / ZIP_FILE
    assert model_file(services, "pets:production") == services.artifacts.run_dir(second) / ZIP_FILE
    assert model_file(services, "pets") == services.artifacts.run_dir(second) / ZIP_FILE  # the latest
    Model.set_alias("pets:1", "production", services=services)
    assert Model("pets:production", services=services).path == services.artifacts.run_dir(first) / ZIP_FILE

    placed = Model.download("pets:2", tmp_path / "out", services=services)
    assert {"MLModel.zip", "Tiny.Model", "Tiny.WebApi", "Tiny.ConsoleApp"} <= set(placed)
    pyproject = tomllib.loads((tmp_path / "out" / "Tiny.Model" / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == "2"
    assert "or '2'" in (tmp_path / "out" / "Tiny.WebApi" / "main.py").read_text()  # the version it reports
    assert (tmp_path / "out" / ZIP_FILE).read_bytes() == (services.artifacts.run_dir(second) / ZIP_FILE).read_bytes()
    assert list((tmp_path / "out" / "Tiny.ConsoleApp").glob("sample.*"))  # the sample image stays


def test_a_run_without_results_is_not_registered(services: Services, trained: TrainedRun):
    services.workspaces.ensure_default()
    queued = services.runs.submit("default", "pets", "local", {"data": str(trained.data)})
    with pytest.raises(Conflict, match="has no results yet"):
        registry.register(services, queued.id, "pets")
    with pytest.raises(NotFound, match="no registered model 'pets'"):
        registry.show(services, "pets")


@pytest.mark.parametrize(("reference", "words"), [
    ("pets:", "reference 'pets:' is not valid"), ("pets:1:2", "is not valid"), ("p:1", "2 to 64 characters"),
    ("pets:0", "version '0' is not valid"), ("pets:prod uction", "alias 'prod uction' is not valid"),
])
def test_bad_references_get_one_line(services: Services, trained: TrainedRun, reference: str, words: str):
    registry.register(services, make_completed_run(services, trained), "pets")
    with pytest.raises(InvalidInput, match=words) as caught:
        registry.resolve(services, reference)
    assert caught.value.hint


def test_unknown_versions_and_aliases(services: Services, trained: TrainedRun):
    registry.register(services, make_completed_run(services, trained), "pets")
    with pytest.raises(NotFound, match="has no version 5") as caught:
        model_file(services, "pets:5")
    assert caught.value.hint
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        model_file(services, "pets:staging")
    with pytest.raises(InvalidInput, match="neither a run id, a registered model nor an existing file"):
        model_file(services, "cats:1")
