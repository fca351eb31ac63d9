"""The portal's home page, New training page and data asset page, as the server renders them."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.sdk import data
from tests.imagery import make_image_folder


def test_home_shows_active_and_recent_runs_compute_load_and_data_assets(
        client: TestClient, services: Services, completed_run: str, queued_run: str, tmp_path: Path) -> None:
    data.upload(services, make_image_folder(tmp_path / "pets", per_label=3), "pets")
    page = client.get("/").text
    active = page[page.index('id="active-runs"'):page.index('id="recent-runs"')]
    assert f'data-run-id="{queued_run}"' in active
    assert completed_run not in active
    recent = page[page.index('id="recent-runs"'):page.index('id="computes"')]
    assert f'href="/workspaces/default/runs/{completed_run}"' in recent
    accuracy = services.runs.get(completed_run).best_metrics["accuracy"]
    assert f"<td data-value=\"{accuracy}\">{accuracy:.4f}</td>" in recent  # its accuracy
    computes = page[page.index('id="computes"'):page.index('id="data-assets"')]
    assert "0 running, 1 queued" in computes
    assert 'href="/workspaces/default/data/pets"' in page
    assert 'href="/new"' in page


def test_new_training_lists_assets_and_computes_and_the_data_page_shows_the_report(
        client: TestClient, services: Services, tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "pets", per_label=3, odd_files=True)
    data.upload(services, folder, "pets")
    new = client.get("/new?data=pets:1").text
    assert '<option value="pets:1">' in new
    assert 'data-preset="pets:1"' in new
    assert '<option value="local" data-priority="dedicated">local · auto · dedicated</option>' in new
    shown = client.get("/workspaces/default/data/pets").text
    assert "Data asset pets:1" in shown
    assert "Skipped files: 2" in shown
    assert "cat/notes.jpg" in shown
    assert client.get("/workspaces/default/data/cats").status_code == 404
    assert client.get("/workspaces/default/data/pets?version=9").status_code == 404
    assert client.get("/workspaces").status_code == 200  # the workspaces list moved here
