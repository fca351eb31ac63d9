"""The portal's registered-models page: as HTML (what it shows, escaping, 404s), and in headless Chromium
against a real `modelbuilder server`: its versions table sorts, its run links and downloads work, and
it runs under the portal's Content-Security-Policy without a complaint."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.sdk import registry
from tests.completed import TrainedRun, make_completed_run

from .conftest import LiveServer
from .test_browser import CHROMIUM, CHROMIUM_ARGS


def test_the_page_shows_versions_runs_metrics_and_aliases(client: TestClient, services: Services,
                                                          completed_run: str, trained: TrainedRun):
    empty = client.get("/workspaces/default/models")
    assert empty.status_code == 200
    assert "No registered models yet" in empty.text
    second = make_completed_run(services, trained)
    registry.register(services, completed_run, "pets")
    registry.register(services, second, "pets", alias="production")
    html = client.get("/workspaces/default/models").text
    assert 'data-model="pets"' in html
    assert f'href="/workspaces/default/runs/{completed_run}"' in html
    assert f'href="/workspaces/default/runs/{second}"' in html
    assert "production → 2" in html
    assert f"{float(trained.metrics['accuracy']):.4f}" in html  # type: ignore[arg-type]
    assert 'href="/api/v1/workspaces/default/models/pets/versions/1/download"' in html
    assert 'href="/workspaces/default/models"' in client.get("/workspaces/default").text
    assert client.get("/workspaces/nowhere/models").status_code == 404
    assert client.get("/workspaces/bad!name/models").status_code == 422


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")
def test_the_page_in_chromium(home: Path, trained: TrainedRun, start_server: Callable[..., LiveServer],
                              tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with Services() as services:  # the store the server will open
        runs = [make_completed_run(services, trained) for _ in range(3)]
        for run_id in runs:
            registry.register(services, run_id, "pets")
        registry.set_alias(services, "pets:2", "production")
    server = start_server()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context().new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda msg: problems.append(f"{msg.text} {msg.location['url']}")
                    if msg.type == "error" and not msg.location["url"].endswith("/favicon.ico") else None)
            page.goto(f"{server.url}/workspaces/default")
            page.click("#models-link")
            page.wait_for_selector("#model-pets")
            versions = page.locator("#model-pets tbody tr")
            assert [versions.nth(i).get_attribute("data-version") for i in range(3)] == ["3", "2", "1"]
            assert page.inner_text("#model-pets .alias") == "production → 2"
            page.click("#model-pets th:has-text('version')")  # sorted by the portal's own script
            page.wait_for_function("document.querySelector('#model-pets tbody tr').dataset.version === '1'")
            href = page.get_attribute("#model-pets tr[data-version='2'] a[href$='/download']", "href")
            bundle = page.context.request.get(server.url + href)
            assert bundle.status == 200
            with zipfile.ZipFile(io.BytesIO(bundle.body())) as archive:
                assert 'version = "2"' in archive.read("Tiny.Model/pyproject.toml").decode()
            page.screenshot(path=str(tmp_path / "models-page.png"), full_page=True)
            page.click(f"#model-pets tr[data-version='3'] a:has-text('{runs[2]}')")
            page.wait_for_url(f"**/workspaces/default/runs/{runs[2]}")
            assert not problems, problems
        finally:
            browser.close()
