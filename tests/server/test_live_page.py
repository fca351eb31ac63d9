"""The run page in a real Chromium: it follows the run through its event stream, without polling the API,
and falls back to polling when the stream is refused (as a proxy that does not pass it would)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.imagery import make_image_folder

from .conftest import LiveServer
from .test_browser import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS

EPOCHS = 3
RECIPE = {"architecture": "tiny", "weights": "none", "image_size": 32, "epochs": EPOCHS, "batch_size": 4,
          "early_stopping_patience": EPOCHS, "name": "Tiny"}
LONG_MS = 180_000
POLLING = ("/history", "/metrics", "/logs?")  # what the page reads from the JSON API when it polls

pytestmark = BROWSER_MARKS


@pytest.mark.parametrize("stream", ["served", "refused"])
def test_the_run_page_follows_its_stream_or_falls_back_to_polling(start_server: Callable[..., LiveServer],
                                                                  tmp_path: Path, stream: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    server = start_server()
    data = make_image_folder(tmp_path / "pets", per_label=10)
    submitted = httpx.post(f"{server.url}/api/v1/runs", json={"experiment": "pets",
                                                              "recipe": {"data": str(data), **RECIPE}}, timeout=30)
    assert submitted.status_code == 201, submitted.text
    run = submitted.json()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            if stream == "refused":
                page.route("**/events", lambda route: route.fulfill(status=503, body="no streams here"))
            page.goto(server.url + run["portal_path"])
            page.wait_for_selector("#run-status.status-completed", timeout=LONG_MS)
            page.wait_for_selector("#downloads:not([hidden])", timeout=30_000)
            assert page.locator("#chart-accuracy circle.point.series-val").count() == EPOCHS
            assert page.locator("#status-history tbody tr").count() == 5
            assert "Running: training from the start" in page.locator("#log-tail").inner_text()
        finally:
            browser.close()
    assert not problems, problems
    api = f"/api/v1/runs/{run['id']}"
    assert any(url.endswith(f"{api}/events") for url in requests), requests
    polled = [url for url in requests if any(f"{api}{what}" in url for what in POLLING)]
    if stream == "served":
        assert not polled, polled
    else:
        assert polled, requests
