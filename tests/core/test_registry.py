"""The model registry (core/registry.py) on SQLite and PostgreSQL: versions 1, 2, ... per name, aliases,
lookups by number, alias or latest, concurrent registrations, and one-line errors with their fix."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core.registry import ModelRegistry
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService
from modelbuilder.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from tests.core.conftest import Team


@pytest.fixture
def registry(store: Store) -> ModelRegistry:
    return ModelRegistry(store)


@pytest.fixture
def run_ids(runs: RunService, team: Team, recipe: dict[str, object]) -> list[str]:
    return [runs.submit(team.workspace, "pets", team.dedicated, recipe).id for _ in range(3)]


def test_versions_count_up_per_name(registry: ModelRegistry, team: Team, run_ids: list[str]) -> None:
    first = registry.register(team.workspace, run_ids[0], "pets", {"accuracy": 0.8})
    second = registry.register(team.workspace, run_ids[1], "pets", {"accuracy": 0.9}, alias="production")
    other = registry.register(team.workspace, run_ids[0], "birds", {})
    assert (first.ref, second.ref, other.ref) == ("pets:1", "pets:2", "birds:1")
    assert second.aliases == ("production",)
    assert [m.name for m in registry.list(team.workspace)] == ["birds", "pets"]
    pets = registry.get(team.workspace, "pets")
    assert [v.version for v in pets.versions] == [2, 1]  # newest first
    assert [v.run_id for v in pets.versions] == [run_ids[1], run_ids[0]]
    assert pets.versions[1].metrics == {"accuracy": 0.8}
    assert pets.aliases == {"production": 2}
    assert pets.latest is not None
    assert pets.latest.version == 2


def test_lookups_by_number_alias_and_latest(registry: ModelRegistry, team: Team, run_ids: list[str]) -> None:
    for run_id in run_ids:
        registry.register(team.workspace, run_id, "pets", {})
    assert registry.version(team.workspace, "pets").version == 3
    assert registry.version(team.workspace, "pets", 2).run_id == run_ids[1]
    registry.set_alias(team.workspace, "pets", "production", 1)
    assert registry.version(team.workspace, "pets", "production").run_id == run_ids[0]
    moved = registry.set_alias(team.workspace, "pets", "production", 3)
    assert moved.aliases == ("production",)
    assert registry.version(team.workspace, "pets", "production").version == 3
    assert registry.version(team.workspace, "pets", 1).aliases == ()
    registry.remove_alias(team.workspace, "pets", "production")
    assert registry.get(team.workspace, "pets").aliases == {}


def test_mistakes_are_refused_with_the_fix(registry: ModelRegistry, team: Team, run_ids: list[str]) -> None:
    registry.register(team.workspace, run_ids[0], "pets", {})
    cases = [
        (lambda: registry.register(team.workspace, run_ids[0], "p", {}), InvalidInput, "2 to 64 characters"),
        (lambda: registry.register(team.workspace, run_ids[0], "pets!", {}), InvalidInput, "not valid"),
        (lambda: registry.register(team.workspace, run_ids[0], "pets", {}, alias="3"), InvalidInput,
         "starting with a letter"),
        (lambda: registry.register(team.workspace, "run-000000000000", "pets", {}), NotFound, "does not exist"),
        (lambda: registry.get(team.workspace, "cats"), NotFound, "no registered model 'cats'"),
        (lambda: registry.version(team.workspace, "pets", 7), NotFound, "has no version 7"),
        (lambda: registry.version(team.workspace, "pets", "staging"), NotFound, "has no alias 'staging'"),
        (lambda: registry.version(team.workspace, "pets", 0), InvalidInput, "version 0 is not valid"),
        (lambda: registry.set_alias(team.workspace, "pets", "production", 9), NotFound, "has no version 9"),
        (lambda: registry.remove_alias(team.workspace, "pets", "production"), NotFound, "no alias"),
        (lambda: registry.list("no-such-workspace"), NotFound, "does not exist"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind, match=words) as caught:
            call()
        assert "\n" not in caught.value.message
        assert caught.value.hint
    assert [v.version for v in registry.get(team.workspace, "pets").versions] == [1]  # nothing was added


def test_a_run_of_another_workspace_is_not_registered(registry: ModelRegistry, workspaces: WorkspaceService,
                                                      team: Team, run_ids: list[str]) -> None:
    workspaces.create("elsewhere", "local", "default")
    with pytest.raises(NotFound, match="does not exist in workspace 'elsewhere'"):
        registry.register("elsewhere", run_ids[0], "pets", {})


def test_concurrent_registrations_get_distinct_versions(store_url: str, team: Team, run_ids: list[str]) -> None:
    """Eight threads, each with its own store (its own connections), register at the same moment."""
    stores = [Store.open(store_url) for _ in range(8)]
    start, versions, errors = threading.Barrier(len(stores)), [], []

    def register(store: Store) -> None:
        start.wait()
        try:
            versions.append(ModelRegistry(store).register(team.workspace, run_ids[0], "pets", {}).version)
        except Exception as exc:  # noqa: BLE001 - collected and shown below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for s in stores:
            s.close()
    assert errors == []
    assert sorted(versions) == list(range(1, 9))
