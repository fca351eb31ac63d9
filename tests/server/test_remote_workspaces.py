"""Workspaces, experiments and computes read and changed through the REST API (`sdk.workspaces`, `sdk.computes`
with a client) are the entities the store gives; and `modelbuilder workspace|experiment|compute ...` from a
client with its own empty home, through a `modelbuilder server` with a token: the workspace the client chose
with `workspace use` is remembered in its home and is the one later commands act in, mistakes are one line
with their fix, and the client's home never gets a store. That server runs no agent, so a run waits Queued
until it is canceled: nothing here depends on how fast anything trains."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from modelbuilder.config import Settings
from modelbuilder.core.services import Services
from modelbuilder.core.workspace import DEFAULT_WORKSPACE
from modelbuilder.sdk import computes, workspaces
from modelbuilder.sdk.client import Client
from tests.imagery import make_image_folder

from .conftest import TOKEN, LiveServer, client_env, run_cli, server_env

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_workspaces_experiments_and_computes_through_the_api_are_the_stores(client: TestClient,
                                                                             services: Services) -> None:
    team = services.workspaces.create("team", "local", "ml-rg")
    services.computes.create("team", "cpu1", "auto")
    services.workspaces.register_or_get_experiment("team", "cats")
    with Client(str(client.base_url), transport=client._transport) as api:  # noqa: SLF001 - the in-process server
        assert workspaces.list_workspaces(services, api) == workspaces.list_workspaces(services)
        assert workspaces.get(services, "team", api) == team
        # the API shows an experiment's or a compute's workspace by name, not by its row's id
        local = [replace(x, experiment=replace(x.experiment, workspace_id="team"))
                 for x in workspaces.experiments(services, "team")]
        assert workspaces.experiments(services, "team", api) == local
        assert workspaces.experiment(services, "team", "cats", api) == local[0].experiment
        compute = replace(computes.get(services, "team", "cpu1"), workspace_id="team")
        assert computes.get(services, "team", "cpu1", api) == compute
        assert computes.list_computes(services, "team", api) == [compute]
        through_api = computes.sizes(services, api)
        assert [size.spec.name for size in through_api] == [size.spec.name for size in computes.sizes(services)]
        assert [(s.dedicated, s.low_priority) for s in through_api if s.spec.name == "Standard_NC6"] == [
            (s.dedicated, s.low_priority) for s in computes.sizes(services) if s.spec.name == "Standard_NC6"]
        made = computes.create(services, "team", "cpu2", "auto", client=api)
        assert made == replace(computes.get(services, "team", "cpu2"), workspace_id="team")
        assert computes.delete(services, "team", "cpu2", client=api) == []
        assert [c.name for c in services.computes.list("team")] == ["cpu1"]


def test_the_workspace_in_use_is_read_and_remembered_without_a_store(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "client-home", db_url=None)
    with Services(settings) as s, Client("http://127.0.0.1:9") as api:  # never asked: nothing here needs a server
        assert s.workspaces.resolve(None) == DEFAULT_WORKSPACE
        workspaces.context(s).remember("team")
        assert s.workspaces.resolve(None) == "team"
        assert workspaces.in_use(s, None, api) == ("team", None)
        assert workspaces.in_use(s, "other", api) == ("other", None)
    assert not (tmp_path / "client-home" / "modelbuilder.db").exists()


def _row(text: str, *cells: str) -> bool:
    """Whether a table in `text` has a row with these cells next to each other."""
    return re.search(r"[\s│]+".join(map(re.escape, cells)), text) is not None


def _client_of(server: LiveServer, home: Path, cwd: Path) -> Cli:
    env = client_env(server.url, home)
    return lambda *args, rc=0: run_cli(env, cwd, *args, rc=rc)


def test_a_remote_client_works_in_the_workspace_it_uses(start_server: Callable[..., LiveServer],
                                                         tmp_path: Path) -> None:
    server = start_server("--token", TOKEN, "--no-agent")
    client_home = tmp_path / "client-home"
    cli = _client_of(server, client_home, tmp_path)
    on_server = httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"})

    assert "Created workspace team" in cli("workspace", "create", "team", "--region", "local",
                                           "--resource-group", "ml").stdout
    assert on_server.get("/workspaces/team").json()["resource_group"] == "ml"
    assert "Using workspace team" in cli("workspace", "use", "team").stdout
    assert json.loads((client_home / "context.json").read_text()) == {"workspace": "team"}
    assert [(w["name"], w["in_use"]) for w in json.loads(cli("workspace", "list", "--json").stdout)] == [
        ("team", True)]
    assert _row(cli("workspace", "list").stdout, "*", "team", "local", "ml")

    # no --workspace from here on: every command acts in 'team', the workspace in use
    assert "in workspace team" in cli("compute", "create", "cpu1", "--size", "auto").stdout
    assert [c["name"] for c in on_server.get("/workspaces/team/computes").json()] == ["cpu1"]
    listed = json.loads(cli("compute", "list", "--json").stdout)
    assert [(c["name"], c["size"], c["state"]) for c in listed] == [("cpu1", "auto", "Succeeded")]
    assert _row(cli("compute", "show", "cpu1").stdout, "workspace", "team")
    assert "No experiments in workspace team yet" in cli("experiment", "list").stdout

    folder = make_image_folder(tmp_path / "client-files" / "pets", per_label=3)
    cli("data", "upload", str(folder), "--name", "pets")
    assert [a["name"] for a in on_server.get("/workspaces/team/data").json()] == ["pets"]
    assert [a["name"] for a in json.loads(cli("data", "list", "--json").stdout)] == ["pets"]
    started = cli("train", "--data", "pets", "--experiment", "cats", "--compute", "cpu1",
                  "--architecture", "tiny", "--weights", "none", "--epochs", "1", "--image-size", "32", "--detach")
    run_id = re.search(r"Run (run-[0-9a-f]{12}) queued", started.stdout).group(1)  # type: ignore[union-attr]
    assert "workspace team" in started.stdout
    assert [r["id"] for r in json.loads(cli("runs", "list", "--json").stdout)] == [run_id]
    experiments = json.loads(cli("experiment", "list", "--json").stdout)
    assert [(x["name"], x["runs"], x["latest_status"]) for x in experiments] == [("cats", 1, "Queued")]
    assert _row(cli("experiment", "list").stdout, "cats", "1", "Queued")
    shown = json.loads(cli("experiment", "show", "cats", "--json").stdout)
    assert shown["experiment"]["workspace"] == "team"
    assert [(r["id"], r["status"], r["compute"]) for r in shown["runs"]] == [(run_id, "Queued", "cpu1")]
    assert run_id in cli("experiment", "show", "cats").stdout
    workspace = json.loads(cli("workspace", "show", "--json").stdout)
    assert workspace["workspace"]["name"] == "team"
    assert [c["name"] for c in workspace["computes"]] == ["cpu1"]
    assert [(x["name"], x["runs"]) for x in workspace["experiments"]] == [("cats", 1)]
    assert workspace["runs_by_status"] == {"Queued": 1}

    assert "run(s) that have not ended" in cli("compute", "delete", "cpu1", rc=2).stderr
    assert run_id in cli("compute", "delete", "cpu1", "--force").stdout
    assert on_server.get(f"/runs/{run_id}").json()["status"] == "Canceled"
    assert "No computes in workspace team" in cli("compute", "list").stdout
    assert "Deleted workspace team and its 1 run(s)" in cli("workspace", "delete", "team").stdout
    assert on_server.get("/workspaces").json() == []
    assert json.loads((client_home / "context.json").read_text()) == {}  # none in use once it is gone
    on_server.close()
    assert not (client_home / "modelbuilder.db").exists()  # every command went through the server


def test_a_remote_clients_mistakes_are_one_line_and_its_sizes_the_servers(start_server: Callable[..., LiveServer],
                                                                          tmp_path: Path) -> None:
    server = start_server("--token", TOKEN, "--no-agent")
    client_home = tmp_path / "client-home"
    cli = _client_of(server, client_home, tmp_path)
    # a new server's first request finds 'default' with its compute 'local', made on first use as locally
    assert [(c["name"], c["workspace_id"]) for c in json.loads(cli("compute", "list", "--json").stdout)] == [
        ("local", "default")]
    cli("workspace", "create", "team", "--region", "local", "--resource-group", "ml")

    assert "Workspace 'nope' does not exist" in cli("workspace", "use", "nope", rc=2).stderr
    assert not (client_home / "context.json").exists()  # nothing remembered
    assert "Workspace 'nope' does not exist" in cli("workspace", "show", "nope", rc=2).stderr
    assert "Workspace 'nope' does not exist" in cli("compute", "list", "--workspace", "nope", rc=2).stderr
    assert "Workspace 'nope' does not exist" in cli("workspace", "delete", "nope", rc=2).stderr
    assert "already exists" in cli("workspace", "create", "team", "--region", "local", "--resource-group", "ml",
                                   rc=2).stderr
    assert "is not valid" in cli("compute", "create", "c1", "--size", "auto", "--workspace", "team",
                                 "--priority", "urgent", rc=2).stderr
    assert "'nope'" in cli("compute", "show", "nope", "--workspace", "team", rc=2).stderr
    assert "'nope'" in cli("compute", "delete", "nope", "--workspace", "team", rc=2).stderr
    assert "'nope'" in cli("experiment", "show", "nope", "--workspace", "team", rc=2).stderr
    assert "server's host" in cli("compute", "evict", "c1", "--workspace", "team", rc=2).stderr

    remote = json.loads(cli("compute", "sizes", "--json").stdout)
    local_env = server_env(tmp_path / "local-home")  # no server: this host's catalog, as the server has it
    local = json.loads(subprocess.run([sys.executable, "-m", "modelbuilder", "compute", "sizes", "--json"],
                                      env=local_env, capture_output=True, text=True, timeout=60, check=True).stdout)
    assert remote == local
    assert {"auto", "Standard_NC6"} <= {row["name"] for row in remote}
    assert "Standard_NC6" in cli("compute", "sizes").stdout
    assert not (client_home / "modelbuilder.db").exists()  # every command went through the server
