"""A sweep's page in headless Chromium: the leaderboard (best trial first, marked), the chart of the best
accuracy so far, and the link from a trial to its sweep, under the portal's real CSP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.sdk import submit, sweep, wait
from modelbuilder.training.recipe import TrainConfig
from tests.imagery import make_image_folder
from tests.plane import Holds

from .conftest import LiveServer
from .test_browser import CHROMIUM, CHROMIUM_ARGS, LONG_MS, watch_problems

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium, or set "
                                                 "MODELBUILDER_TEST_CHROMIUM)"),
]
SPACE = {"learning_rate": "choice(0.01, 0.000000001)", "model_name": "tiny", "number_of_epochs": 2}


def test_the_sweep_page_shows_its_leaderboard(home: Path, tmp_path: Path,
                                              start_server: Callable[..., LiveServer]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    data = make_image_folder(tmp_path / "pets", per_label=8)
    recipe = TrainConfig.from_dict({"data": str(data), "architecture": "tiny", "weights": "none", "image_size": 32,
                                    "batch_size": 4, "name": "Tiny"})
    settings = sweep.sweep_settings(SPACE, max_trials=2, sampling="grid", early_termination="none")
    with Services() as services:
        parent = submit.submit(services, recipe, sweep=settings).run
        ended = wait.wait(services, parent.id, timeout=300)
        assert ended.status == e.COMPLETED, ended.status_reason
        board = sweep.leaderboard(services, ended)
    server = start_server("--no-agent")  # over the same home
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems = watch_problems(page)
            page.goto(f"{server.url}/workspaces/default/runs/{parent.id}")
            rows = page.locator("#leaderboard-table tbody tr")
            assert rows.count() == 2
            assert rows.first.get_attribute("data-trial") == str(board[0].number)
            assert "best" in rows.first.inner_text()
            assert "learning_rate" in rows.first.inner_text()
            assert page.locator("#chart-best circle").count() == 2  # one point per finished trial
            assert page.locator("#chart-settings polyline.trial-line").count() == 2  # one line per trial
            assert "learning_rate" in page.text_content("#chart-settings")  # the one setting searched, an axis
            page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)
            rows.first.locator("a").click()
            page.wait_for_url(f"**/runs/{board[0].run_id}", timeout=30_000)
            assert f"of sweep {parent.id}" in page.inner_text("p.meta")
            assert not problems, problems
        finally:
            browser.close()


def test_the_leaderboard_follows_a_running_sweep(holds: Holds, start_server: Callable[..., LiveServer],
                                                 tmp_path: Path) -> None:
    """Trials appear and finish on the open page without a reload (each trial held in its second epoch until
    the page has shown it, so this holds on a machine of any speed)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    data = make_image_folder(tmp_path / "pets", per_label=8)
    holds.at("training 2 1")  # before the server starts: its workers inherit the pause points
    server = start_server()
    submitted = httpx.post(f"{server.url}/api/v1/runs", json={
        "experiment": "pets", "recipe": {"data": str(data), "weights": "none", "image_size": 32, "batch_size": 4},
        "search": {"search": SPACE, "max_trials": 2, "sampling": "grid", "early_termination": "none"}})
    assert submitted.status_code == 201, submitted.text
    parent = submitted.json()

    def trial_run(number: int) -> str:
        trials = httpx.get(f"{server.url}/api/v1/runs/{parent['id']}/trials").json()
        return next(t["run_id"] for t in trials if t["number"] == number)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems = watch_problems(page)
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame
                    else None)
            page.goto(server.url + parent["portal_path"])
            for number in (0, 1):
                page.wait_for_selector(f"#leaderboard-table tr[data-trial='{number}']", timeout=LONG_MS)
                holds.release(trial_run(number))
            page.wait_for_selector("#leaderboard-table tr.best", timeout=LONG_MS)
            assert page.locator("#leaderboard-table tbody tr").count() == 2
            assert "Completed" in page.inner_text("#leaderboard-table")
            assert len(navigations) == 1, navigations  # live, not reloaded
            assert not problems, problems
        finally:
            browser.close()
