"""Manifests through every face: a bad line is the same one-line error from the CLI, the SDK and the API, and
a multi-label manifest is queued as one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.errors import DataError
from modelbuilder.sdk import Workspace, submit
from tests.cli.driver import Cli
from tests.imagery import make_image_folder, make_multilabel_set

TINY = {"architecture": "tiny", "weights": "none", "image_size": 32}


def test_a_bad_line_is_the_same_error_from_every_face(services: Services, cli: Cli, client: TestClient,
                                                     tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", per_label=2)
    manifest = root / "m.jsonl"
    manifest.write_text(json.dumps({"image_url": "cat/000.jpg", "label": "cat"}) + "\n"
                        + json.dumps({"image_url": "s3://bucket/dog/1.jpg", "label": "dog"}) + "\n")
    with pytest.raises(DataError) as refused:
        submit.check_data(submit.recipe_from({"data": manifest}))
    error = refused.value
    assert error.message.startswith("Line 2 of ")
    line = cli("train", "--data", str(manifest), "--detach").user_error()
    assert line == f"error: {error.message} Fix: {error.hint}"
    with pytest.raises(DataError) as by_sdk:
        Workspace.get(services=services).experiment("pets").submit(manifest, **TINY)
    assert (by_sdk.value.message, by_sdk.value.hint) == (error.message, error.hint)
    response = client.post("/api/v1/runs", json={"experiment": "pets", "recipe": {"data": str(manifest)}})
    assert response.status_code == 422
    assert response.json() == {"code": error.code, "message": error.message, "hint": error.hint}
    assert all(services.runs.list(w.name) == [] for w in services.workspaces.list())


def test_a_multilabel_manifest_is_queued_and_a_multiclass_one_refuses_several_labels(
        services: Services, cli: Cli, tmp_path: Path) -> None:
    manifest = make_multilabel_set(tmp_path / "tags", per_label=3)
    run = Workspace.get(services=services).experiment("tags").submit(manifest, **TINY)
    assert run.entity.recipe["task"] == "auto"  # the worker records what auto meant: multilabel
    cli("train", "--data", str(manifest), "--task", "multilabel", "--detach").ok()
    line = cli("train", "--data", str(manifest), "--task", "multiclass", "--detach").user_error("several labels")
    assert "--task multilabel" in line
    cli("train", "--data", str(manifest), "--class-weights", "balanced", "--detach").user_error(
        "Multi-label training takes no class_weights")  # auto meant multilabel: refused before it is queued
