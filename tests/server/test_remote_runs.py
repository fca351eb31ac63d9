"""Runs read through the REST API (`sdk.runs` with a client) are the runs the store gives, so the CLI renders
both alike; and `modelbuilder runs ...` from a client with its own empty home, through a `modelbuilder server`
with a token: the run it started is listed, shown, its log read and followed, and canceled, all through the
API, and the client's home never gets a store. That server runs no agent, so the run waits Queued until it
is canceled: nothing here depends on how fast anything trains."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from fastapi.testclient import TestClient

from modelbuilder.core import entities as e
from modelbuilder.core.follow import RunEvent
from modelbuilder.core.services import Services
from modelbuilder.sdk import runs
from modelbuilder.sdk.client import Client
from tests.completed import TINY_RECIPE
from tests.imagery import make_image_folder

from .conftest import TOKEN, LiveServer, client_env, run_cli

# What a run's API answer does not carry (rows' ids, the lease, how the request was made, resume points).
NOT_IN_THE_API = {"workspace_id", "experiment_id", "compute_id", "lease_owner", "lease_expires_at", "max_preemptions",
                  "resume_from", "idempotency_key", "request_hash", "preempt_requested", "resume_epoch",
                  "resume_step", "preempt_reason", "termination_reason"}


def test_a_run_read_through_the_api_is_the_run_the_store_gives(client: TestClient, services: Services,
                                                                completed_run: str, tmp_path: Path) -> None:
    def shown(run: e.Run) -> dict[str, object]:
        return {k: v for k, v in asdict(run).items() if k not in NOT_IN_THE_API}

    def seen(event: RunEvent) -> tuple[object, ...]:
        status = replace(event.status, details={}) if event.status else None
        return event.kind, status, event.log, event.epoch, event.values, event.progress, event.run.status

    run_id = completed_run
    with Client(str(client.base_url), transport=client._transport) as api:  # noqa: SLF001 - the in-process server
        assert shown(runs.get(services, run_id, api)) == shown(runs.get(services, run_id))
        assert [r.id for r in runs.list_runs(services, client=api)] == [r.id for r in runs.list_runs(services)]
        history = [replace(change, details={}) for change in runs.history(services, run_id)]  # the API has none
        assert runs.history(services, run_id, api) == history
        assert runs.artifacts(services, run_id, api) == runs.artifacts(services, run_id)
        assert runs.logs(services, run_id, api) == runs.logs(services, run_id)
        followed = [seen(event) for event in runs.events(services, run_id, api)]
        assert followed == [seen(event) for event in runs.events(services, run_id)]
        assert {"metrics", "log", "status", "end"} <= {kind for kind, *_ in followed}
        wrong_and_right = runs.errors(services, run_id, include_correct=True, client=api)
        assert wrong_and_right == runs.errors(services, run_id, include_correct=True)
        assert wrong_and_right
        assert runs.data_report(services, run_id, api) == runs.data_report(services, run_id)
        fetched = runs.download(services, run_id, tmp_path / "fetched", api)
    copied = runs.download(services, run_id, tmp_path / "copied")
    assert sorted(fetched) == sorted(copied)
    assert all((tmp_path / "fetched" / name).exists() for name in copied)


def test_a_sweeps_trials_through_the_api_are_its_leaderboard(client: TestClient, services: Services,
                                                              tmp_path: Path) -> None:
    services.workspaces.ensure_default()
    recipe = {"data": str(tmp_path), **TINY_RECIPE}
    parent = services.runs.submit("default", "pets", "local", recipe, sweep={"space": {"learning_rate": [0.1, 0.2]}})
    for number in (0, 1):
        services.runs.submit("default", "pets", "local", recipe, parent_run_id=parent.id,
                             trial={"number": number, "params": {"learning_rate": 0.1 * (number + 1)}})
    with Client(str(client.base_url), transport=client._transport) as api:  # noqa: SLF001 - the in-process server
        through_api = runs.get(services, parent.id, api)
        assert through_api.is_sweep
        board = runs.trials(services, through_api, api)
        assert [trial.number for trial in board] == [0, 1]
        assert board == runs.trials(services, parent)
        assert {run.parent_run_id for run in runs.list_runs(services, client=api)} == {None, parent.id}


def test_a_remote_client_lists_shows_and_cancels_its_run(start_server: Callable[..., LiveServer],
                                                         tmp_path: Path) -> None:
    server = start_server("--token", TOKEN, "--no-agent")
    folder = make_image_folder(tmp_path / "client-files" / "pets", per_label=3)
    client_home = tmp_path / "client-home"
    env = client_env(server.url, client_home)  # no line of `runs show` wraps, every column of `runs list` fits

    def client(*args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
        return run_cli(env, tmp_path, *args, rc=rc)

    client("data", "upload", str(folder), "--name", "pets")
    started = client("train", "--data", "pets", "--architecture", "tiny", "--weights", "none", "--epochs", "1",
                     "--image-size", "32", "--detach")
    found = re.search(r"Run (run-[0-9a-f]{12}) queued", started.stdout)
    assert found, started.stdout
    run_id = found.group(1)

    listed = client("runs", "list")
    assert run_id in listed.stdout
    assert "Queued" in listed.stdout
    assert [run["id"] for run in json.loads(client("runs", "list", "--json").stdout)] == [run_id]
    assert client("runs", "list", "--status", "Completed", "--json").stdout.strip() == "[]"
    shown = client("runs", "show", run_id)
    assert f"{run_id}  Queued" in shown.stdout
    assert "error retries 0/2" in shown.stdout  # the API's max_error_retries, as the local store has it
    assert "Queued" in shown.stdout.split("status history", 1)[1]
    early = client("runs", "download", run_id, "-o", "out", rc=2)
    assert f"Run {run_id} has no results yet (Queued)" in early.stderr
    assert not (tmp_path / "out").exists()
    assert f"Run {run_id}" in client("runs", "report", run_id, rc=2).stderr  # nothing read yet: 409, one line

    assert f"Run {run_id} canceled." in client("runs", "cancel", run_id).stdout
    assert f"{run_id}  Canceled" in client("runs", "show", run_id).stdout
    assert client("runs", "cancel", run_id).returncode == 0  # canceling again is no error, as locally
    client("runs", "logs", run_id)
    client("runs", "logs", run_id, "--follow")  # the run ended: following returns at once

    unknown = client("runs", "show", "run-000000000000", rc=2)
    assert "run-000000000000" in unknown.stderr
    assert "'modelbuilder runs list'" in unknown.stderr  # the fix worded as this client's command, not a request
    assert "/api/v1" not in unknown.stderr
    assert "not" in client("runs", "cancel", "run-000000000000", rc=2).stderr
    assert not (client_home / "modelbuilder.db").exists()  # every command went through the server
