"""The portal's pages as HTML: what they show, that they escape what users and workers wrote, and that
they carry no inline code (the pages' Content-Security-Policy would block it)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core import compute as compute_module
from modelbuilder.core.services import Services
from modelbuilder.errors import CapacityError

from .conftest import TrainedRun

HOSTILE_TEXT = '<script>alert("x")</script><img src=x onerror=alert(1)>'
INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<[^>]*\s(on[a-z]+|style)\s*=|javascript:", re.IGNORECASE)


def page(client: TestClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert not INLINE_CODE.search(response.text), INLINE_CODE.search(response.text)
    return response.text


def test_pages_show_workspaces_computes_experiments_and_runs(client: TestClient, completed_run: str,
                                                             trained: TrainedRun) -> None:
    assert 'href="/workspaces/default"' in page(client, "/")
    overview = page(client, "/workspaces/default")
    assert 'data-compute="local"' in overview
    assert "Succeeded" in overview
    assert f'href="/workspaces/default/runs/{completed_run}"' in overview
    assert 'href="/workspaces/default/experiments/pets"' in overview
    experiment = page(client, "/workspaces/default/experiments/pets")
    assert f'value="{completed_run}"' in experiment
    assert 'id="compare-button"' in experiment
    assert f"{trained.metrics['accuracy']:.4f}" in experiment  # the run's accuracy in the table
    run = page(client, f"/workspaces/default/runs/{completed_run}")
    for element in ("run-status", "status-history", "chart-loss", "chart-accuracy", "log-tail", "data-report",
                    "evaluation", "download-bundle", "download-onnx", "download-map", "download-mlmodel",
                    "predict-form", "progress-eta", "progress-speed"):
        assert f'id="{element}"' in run, element
    assert f'href="/api/v1/runs/{completed_run}/bundle"' in run
    assert 'id="downloads" >' in run  # shown: the run has results


def test_missing_things_are_404_pages(client: TestClient, completed_run: str) -> None:
    page(client, "/workspaces/nope-nope", 404)
    page(client, "/workspaces/default/experiments/nothing", 404)
    page(client, "/workspaces/default/runs/run-0123456789ab", 404)
    page(client, "/workspaces/default/runs/not-a-run", 404)
    client.post("/api/v1/workspaces", json={"name": "team-b"})
    page(client, f"/workspaces/team-b/runs/{completed_run}", 404)  # a run is shown under its own workspace only
    page(client, "/workspaces/bad!name", 422)


def test_text_from_users_and_workers_is_escaped(client: TestClient, services: Services,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def hostile_provisioner(compute: object, size: object) -> None:
        raise CapacityError(HOSTILE_TEXT, HOSTILE_TEXT)

    monkeypatch.setitem(compute_module._PROVISIONERS, "ray", hostile_provisioner)
    services.workspaces.ensure_default()
    created = client.post("/api/v1/workspaces/default/computes", json={"name": "ray-1", "size": "auto",
                                                                       "kind": "ray", "address": "auto"})
    assert created.json()["error"].startswith(HOSTILE_TEXT)  # stored as written...
    overview = page(client, "/workspaces/default")
    assert HOSTILE_TEXT not in overview  # ...and shown as text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in overview


def test_static_files_are_served(client: TestClient) -> None:
    for name in ("app.js", "run.js", "experiment.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert "innerHTML" not in response.text
        assert "eval(" not in response.text
