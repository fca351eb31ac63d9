"""The portal's home page, New training page and data asset page, as the server renders them."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import event

from modelbuilder.core import entities as e
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
    for _ in range(12):  # more queued runs than the recent list is long: the finished one still shows
        services.runs.submit("default", "pets", "local", {"data": "unused"})
    page = client.get("/").text
    assert completed_run in page[page.index('id="recent-runs"'):page.index('id="computes"')]


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


def _statements_rendering_home(client: TestClient, services: Services) -> int:
    """How many SQL statements the store runs while the home page renders."""
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(services.store.engine, "before_cursor_execute", count)
    try:
        assert client.get("/").status_code == 200
    finally:
        event.remove(services.store.engine, "before_cursor_execute", count)
    return len(statements)


def _add_versions(services: Services, workspace: str, name: str, count: int) -> None:
    for number in range(1, count + 1):
        services.data.add_version(workspace, name, services.data.staging_folder(), digest=f"{name}-{number}",
                                  images=number, size=number, labels={"cat": number}, report={"skipped": []})


def _runs_in_every_status(services: Services, workspace: str, compute_id: str) -> None:
    """Six runs: Queued, Preparing, Running, Completed, Failed and Canceled."""
    def submit() -> str:
        return services.runs.submit(workspace, "pets", "local", {"data": "unused"}).id

    submit()
    services.runs.request_cancel(submit())
    services.runs.transition(submit(), e.FAILED, "broken")
    held = []
    for _ in range(3):
        submit()
        claimed = services.leases.claim_next_run([compute_id], "agent", 60)
        assert claimed is not None
        held.append(claimed)
    preparing, running, completed = held
    services.runs.transition(running.id, e.RUNNING, "started", attempt=running.attempt)
    services.runs.transition(completed.id, e.RUNNING, "started", attempt=completed.attempt)
    services.runs.transition(completed.id, e.FINALIZING, "exporting", attempt=completed.attempt)
    services.runs.transition(completed.id, e.COMPLETED, "done", attempt=completed.attempt)


def test_home_page_reads_a_bounded_number_of_statements(client: TestClient, services: Services) -> None:
    _, local = services.workspaces.ensure_default()
    _add_versions(services, "default", "pets", 1)
    few = _statements_rendering_home(client, services)
    _runs_in_every_status(services, "default", local.id)
    for workspace in ("team-a", "team-b"):
        services.workspaces.create(workspace, "local", "default")
        compute = services.computes.create(workspace, "local", "auto")
        _runs_in_every_status(services, workspace, compute.id)
    for workspace in ("default", "team-a", "team-b"):
        _add_versions(services, workspace, "birds", 3)
    many = _statements_rendering_home(client, services)
    page = client.get("/").text
    assert page.count('class="active-run"') == 9  # three workspaces' Queued, Preparing and Running runs
    assert page.count('data-asset="') == 4
    assert many == few <= 10, f"{few} statements for one workspace and asset, {many} for three of each"
