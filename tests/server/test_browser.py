"""The portal in headless Chromium while a real run trains: the run page goes live without a reload.

Starts `modelbuilder server` (with its agent) on a free loopback port over a fresh home, submits a
tiny run through the API, and watches its page: the status reaches Running and then Completed, the
accuracy chart gains one point per epoch as epochs finish, the downloads work, "try the model"
answers, and the experiment page compares the run's curves. Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.imagery import make_image_folder
from tests.plane import Holds

from .conftest import TOKEN, LiveServer

CHROMIUM = os.environ.get("MODELBUILDER_TEST_CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# The run's worker is held in its second epoch (a pause point) until the page has shown it Running with
# the first epoch's point, so the page sees the run live on a machine of any speed.
EPOCHS = 6
PER_LABEL = 10
HELD_AT = "training 2 1"
RECIPE = {"architecture": "tiny", "weights": "none", "image_size": 32, "epochs": EPOCHS, "batch_size": 4,
          "early_stopping_patience": EPOCHS, "name": "Tiny"}
LONG_MS = 180_000

# every Chromium test module's marks (its pytestmark)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium, or set "
                                                 "MODELBUILDER_TEST_CHROMIUM)"),
]
pytestmark = BROWSER_MARKS

# Installed before the page's own scripts: records every status the page shows and every count of
# validation-accuracy points the chart draws, as they happen.
RECORDER = """
window.__seen = {statuses: [], points: []};
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("run-status");
  const chart = document.getElementById("chart-accuracy");
  if (!status || !chart) return;
  const record = () => {
    const text = status.textContent.trim();
    if (window.__seen.statuses[window.__seen.statuses.length - 1] !== text) window.__seen.statuses.push(text);
    const points = chart.querySelectorAll("circle.point.series-val").length;
    if (window.__seen.points[window.__seen.points.length - 1] !== points) window.__seen.points.push(points);
  };
  record();
  new MutationObserver(record).observe(document.getElementById("run-page"),
                                       {subtree: true, childList: true, characterData: true});
});
"""


def watch_problems(page: Any) -> list[str]:
    """The page's script errors and Content Security Policy refusals, collected as they happen."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    return problems


def test_run_page_follows_a_real_run(holds: Holds, start_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    data = make_image_folder(tmp_path / "pets", per_label=PER_LABEL)
    holds.at(HELD_AT)  # before the server starts: its workers inherit the pause points
    server = start_server()
    submitted = httpx.post(f"{server.url}/api/v1/runs", json={"experiment": "pets",
                                                              "recipe": {"data": str(data), **RECIPE}})
    assert submitted.status_code == 201, submitted.text
    run = submitted.json()
    run_url = server.url + run["portal_path"]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # Playwright's wait_for_function evaluates strings in the page, which the portal's CSP forbids;
            # this context lets it, and the last check below loads the page again under the real CSP.
            context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000},
                                          bypass_csp=True)
            page = context.new_page()
            page.add_init_script(RECORDER)
            problems = watch_problems(page)
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame
                    else None)
            page.goto(run_url)
            try:
                follow_live(page, run_url, navigations, lambda: holds.release(run["id"]))
            except Exception:
                page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
                print("seen:", page.evaluate("window.__seen"), "\nrun:", httpx.get(
                    f"{server.url}/api/v1/runs/{run['id']}").text, "\nserver:", server.stop()[-3000:])
                raise
            # Downloads, through the page's own links.
            with page.expect_download() as download_info:
                page.click("#download-bundle")
            bundle = tmp_path / "bundle.zip"
            download_info.value.save_as(bundle)
            with zipfile.ZipFile(bundle) as archive:
                names = set(archive.namelist())
            assert {"Tiny.ConsoleApp/main.py", "bestModel.onnx", "bestModelMap.json", "MLModel.zip"} <= names
            for link in ("#download-onnx", "#download-map", "#download-mlmodel"):
                href = page.get_attribute(link, "href")
                assert href is not None, link
                assert context.request.get(server.url + href).status == 200, link

            # Try the model with one of the training images.
            page.set_input_files("#predict-file", str(data / "dog" / "001.png"))
            page.click("#predict-button")
            page.wait_for_selector("#predict-result:not([hidden])", timeout=30_000)
            assert page.inner_text("#predict-label") in ("cat", "dog")
            assert page.locator("#predict-scores tbody tr").count() == 2
            page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)

            # The experiment page: sort by a header, tick the run, compare its curves.
            page.goto(f"{server.url}/workspaces/default/experiments/pets")
            page.click("#runs th:has-text('accuracy')")
            assert page.get_attribute("#runs th:has-text('accuracy')", "aria-sort") == "ascending"
            page.check(f"input.compare-pick[value='{run['id']}']")
            page.click("#compare-button")
            page.wait_for_function(f"document.querySelectorAll('#compare-accuracy circle.point').length === {EPOCHS}",
                                   timeout=30_000)
            page.screenshot(path=str(tmp_path / "experiment-page.png"), full_page=True)
            assert not problems, problems

            # The finished run's page under the real Content-Security-Policy: its scripts still do everything.
            strict = browser.new_context().new_page()
            strict.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            strict.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text
                      else None)
            strict.goto(run_url)
            strict.wait_for_selector("#evaluation:not([hidden])", timeout=30_000)
            assert strict.locator("#chart-accuracy circle.point.series-val").count() == EPOCHS
            assert not problems, problems
        finally:
            browser.close()
    print(f"screenshots: {tmp_path / 'run-page.png'}, {tmp_path / 'experiment-page.png'}")


def follow_live(page: Any, run_url: str, navigations: list[str], release: Callable[[], None]) -> None:
    """Running, then validation points arriving epoch by epoch, then Completed, all without a reload."""
    page.wait_for_function("window.__seen.statuses.includes('Running')", timeout=LONG_MS, polling=100)
    first = page.wait_for_function("document.querySelectorAll('#chart-accuracy circle.point.series-val')"
                                   ".length || false", timeout=LONG_MS, polling=100).json_value()
    release()  # the first epoch's point arrived while the run is held in the second: let it go on
    later = page.wait_for_function(
        f"(n => n > {first} ? n : false)(document.querySelectorAll("
        "'#chart-accuracy circle.point.series-val').length)", timeout=LONG_MS, polling=100).json_value()
    assert later > first >= 1
    page.wait_for_function("document.getElementById('run-status').textContent.trim() === 'Completed'",
                           timeout=LONG_MS, polling=100)
    page.wait_for_selector("#downloads:not([hidden])", timeout=30_000)
    page.wait_for_selector("#evaluation:not([hidden])", timeout=30_000)
    seen = page.evaluate("window.__seen")
    assert navigations == [run_url], navigations  # never reloaded
    statuses = seen["statuses"]
    assert statuses[-1] == "Completed", statuses
    assert "Running" in statuses, statuses
    order = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses), statuses
    assert len([n for n in seen["points"] if n > 0]) >= 2, seen["points"]  # gained points while live
    assert page.locator("#chart-accuracy circle.point.series-val").count() == EPOCHS  # one per epoch
    assert page.locator("#chart-loss circle.point.series-val").count() == EPOCHS
    history = page.locator("#status-history tbody tr")
    assert history.count() >= 5
    assert "Completed" in history.last.inner_text()
    assert page.locator("#data-per-label tbody tr").count() == 2
    assert page.locator("#per-label tbody tr").count() == 2
    assert page.locator("#confusion-matrix tbody tr").count() == 2
    assert "Running" in page.locator("#log-tail").inner_text()


def test_sign_in_with_the_token(start_server: Callable[..., LiveServer]) -> None:
    """With a token, a page sends the browser to the sign-in form; the token opens the portal (a cookie),
    and signing out closes it again."""
    sync_api = pytest.importorskip("playwright.sync_api")
    server = start_server("--token", TOKEN, "--no-agent")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/workspaces/default")
            assert page.url.startswith(f"{server.url}/login?next=")
            page.fill("#login-token", "not-the-token-at-all")
            page.click("#login-form button")
            assert page.inner_text("#login-error") == "That token is not right."
            page.fill("#login-token", TOKEN)
            page.click("#login-form button")
            page.wait_for_url(f"{server.url}/workspaces/default")
            assert page.inner_text("h1") == "404"  # signed in: the page itself answers (no such workspace yet)
            page.goto(f"{server.url}/workspaces")
            assert page.inner_text("h1") == "Workspaces"
            page.click("form.logout button")
            page.wait_for_url(f"{server.url}/login")
            page.goto(f"{server.url}/")
            assert page.url.startswith(f"{server.url}/login")
        finally:
            browser.close()


def test_a_confusion_cell_opens_the_gallery_of_its_images(completed_run: str, services: Any,
                                                          start_server: Callable[..., LiveServer],
                                                          tmp_path: Path) -> None:
    """The finished run's page under the real CSP: a count in the confusion matrix links to a gallery of those
    validation images, whose thumbnails load through the API; the page shows the table, not a second PNG; the
    data tab lists a labelling conflict its report holds."""
    sync_api = pytest.importorskip("playwright.sync_api")
    report_path = services.artifacts.run_dir(completed_run) / "data_report.json"
    report = json.loads(report_path.read_text())
    report["duplicates"]["pairs"].append({"kind": "exact", "distance": 0, "across_labels": True, "across_split": True,
                                          "images": [{"path": "cat/001.png", "label": "cat", "split": "training"},
                                                     {"path": "dog/009.png", "label": "dog", "split": "validation"}]})
    report_path.write_text(json.dumps(report))
    server = start_server("--no-agent")  # over the same home, so it serves `completed_run`
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems = watch_problems(page)
            page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
                    if response.status >= 400 else None)
            page.goto(f"{server.url}/workspaces/default/runs/{completed_run}")
            page.wait_for_selector("#evaluation:not([hidden])", timeout=30_000)
            assert page.locator("#evaluation img").count() == 0  # the confusion matrix once: the table
            page.wait_for_selector("#data-findings li[data-topic='leaks']", timeout=30_000)
            conflict = page.inner_text("#data-duplicates tbody")
            assert "training: cat/001.png" in conflict
            assert "filed under two labels; on both sides of the split (a leak)" in conflict
            cell = page.locator("#confusion-matrix tbody tr").first.locator("td a").first
            count = int(cell.inner_text())
            assert count >= 1
            cell.click()
            page.wait_for_url("**/gallery?*", timeout=30_000)
            assert "true=cat" in page.url
            assert "predicted=cat" in page.url
            assert page.locator("#gallery li").count() == count
            page.wait_for_function("[...document.querySelectorAll('#gallery img')].every("
                                   "(img) => img.complete && img.naturalWidth > 0)", timeout=30_000)
            page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
            page.go_back()
            label = page.locator("#per-label tbody tr").last.locator("a")
            label.click()
            page.wait_for_url("**/gallery?*", timeout=30_000)
            assert page.locator("#gallery li").count() >= 1
            assert not problems, problems
        finally:
            browser.close()


def test_the_first_epochs_loss_does_not_set_the_charts_scale(services: Any, trained: Any,
                                                              start_server: Callable[..., LiveServer]) -> None:
    """A first epoch's loss of 33.9 against about 1 after it is drawn on the top edge, marked clipped; the
    later epochs keep the chart's height to themselves."""
    from dataclasses import replace

    from tests.completed import make_completed_run

    history = [dict(h) for h in trained.metrics["history"]]
    history[0]["train_loss"] = 33.9
    run_id = make_completed_run(services, replace(trained, metrics={**trained.metrics, "history": history}))
    sync_api = pytest.importorskip("playwright.sync_api")
    server = start_server("--no-agent")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/workspaces/default/runs/{run_id}")
            page.wait_for_selector("#chart-loss circle.point.series-train.clipped", timeout=30_000)
            ys = {int(c.get_attribute("data-epoch")): float(c.get_attribute("cy"))
                  for c in page.locator("#chart-loss circle.point.series-train").all()}
            clipped = page.locator("#chart-loss circle.clipped")
            assert clipped.count() == 1
            assert "33.9000 (off the scale)" in (clipped.locator("title").text_content() or "")
            later = [y for epoch, y in ys.items() if epoch > 1]
            assert ys[1] <= min(later)  # on the top edge (smaller y is higher)
            ticks = [float(t.text_content() or "nan") for t in page.locator("#chart-loss text.tick").all()[:5]]
            assert max(ticks) < 33.9 / 2  # the axis is scaled to the later epochs
        finally:
            browser.close()


def test_try_the_model_shows_where_the_network_finds_the_label(completed_run: str, trained: Any,
                                                                start_server: Callable[..., LiveServer],
                                                                tmp_path: Path) -> None:
    """Under the real CSP: an uploaded image gets its scores and, beside them, one overlay per method for the
    prediction, each a PNG of the image's size; a label's button explains that label instead."""
    sync_api = pytest.importorskip("playwright.sync_api")
    image = trained.data / "dog" / "001.png"
    server = start_server("--no-agent")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems = watch_problems(page)
            page.goto(f"{server.url}/workspaces/default/runs/{completed_run}")
            page.set_input_files("#predict-file", str(image))
            page.click("#predict-button")
            page.wait_for_selector("#predict-result:not([hidden])", timeout=30_000)
            prediction = page.inner_text("#predict-label")
            page.wait_for_function("() => [...document.querySelectorAll('#explain-overlays img')].filter("
                                   "(img) => img.complete && img.naturalWidth > 0).length === 2", timeout=60_000)
            assert "(the prediction)" in page.inner_text("#explain-status")
            sizes = page.eval_on_selector_all("#explain-overlays img", "(imgs) => imgs.map("
                                              "(img) => [img.naturalWidth, img.naturalHeight])")
            assert sizes == [[32, 32], [32, 32]]  # the image's own size
            methods = page.eval_on_selector_all("#explain-overlays figure", "(fs) => fs.map((f) => f.dataset.method)")
            assert methods == ["gradcam", "integrated_gradients"]
            assert page.locator(f"#explain-overlays figure[data-label='{prediction}']").count() == 2
            other = "cat" if prediction == "dog" else "dog"
            page.click(f"#predict-scores button[data-label='{other}']")
            page.wait_for_selector(f"#explain-overlays figure[data-label='{other}'] img", timeout=60_000)
            assert page.inner_text("#explain-status") == f"Where the model finds {other}:"
            page.screenshot(path=str(tmp_path / "explain.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()
