"""The run page of a multi-label run in headless Chromium (its thresholds, mAP and per-label table, each label
linked to its images), and the link from a run started from another to that run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelbuilder.results.files import METRICS_FILE, PREDICTIONS_FILE
from modelbuilder.results.runtime import PredictionEngine
from modelbuilder.training.engine import run_training
from modelbuilder.training.predictions import read_predictions
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import NullReporter
from tests.completed import TINY_RECIPE, TrainedRun, make_completed_run
from tests.imagery import make_multilabel_set

from .conftest import LiveServer
from .test_browser import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, watch_problems

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    root = tmp_path_factory.mktemp("tagged")
    manifest = make_multilabel_set(root / "tags", per_label=8)
    recipe = TrainConfig.from_dict({**TINY_RECIPE, "data": str(manifest), "precision": "fp32"})
    result = run_training(recipe, root / "run", NullReporter(), cache_root=root / "cache", offline=True)
    return TrainedRun(manifest, result.run_dir, json.loads((result.run_dir / METRICS_FILE).read_text()))


def test_a_multilabel_runs_page_shows_thresholds_and_map(services: Any, tagged: TrainedRun,
                                                         start_server: Callable[..., LiveServer],
                                                         tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    parent = make_completed_run(services, tagged)
    child = services.runs.submit("default", "pets", "local", {"data": str(tagged.data), **TINY_RECIPE,
                                                              "from_run": parent}, project_name="Tiny").id
    server = start_server("--no-agent")  # over the same home, so it serves both runs
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems = watch_problems(page)
            page.goto(f"{server.url}/workspaces/default/runs/{parent}")
            page.wait_for_selector("#evaluation:not([hidden])", timeout=30_000)
            summary = page.inner_text("#eval-summary")
            assert f"mAP {tagged.metrics['mean_average_precision']:.4f}" in summary  # type: ignore[index]
            assert "micro F1" in summary
            assert page.inner_text("#per-label thead").split() == ["label", "threshold", "precision", "recall",
                                                                   "F1", "AP", "images"]
            rows = page.locator("#per-label tbody tr")
            assert rows.count() == 3
            bright = rows.first.inner_text().split()
            threshold = tagged.metrics["thresholds"]["bright"]  # type: ignore[index]
            assert bright[:2] == ["bright", f"{threshold:.4f}"]
            assert not page.locator("#confusion-matrix").is_visible()
            engine = PredictionEngine.load(tagged.folder / "MLModel.zip")
            image = next(p for p in sorted(tagged.data.parent.glob("*/*.*"))
                         if len(engine.predict(p).predicted_labels or []) >= 2)
            found = engine.predict(image).predicted_labels
            page.set_input_files("#predict-file", str(image))
            page.click("#predict-button")
            page.wait_for_selector("#predict-result:not([hidden])", timeout=30_000)
            assert page.inner_text("#predict-label") == ", ".join(found)
            marked = page.locator("#predict-scores tbody tr.predicted td:first-child").all_inner_texts()
            assert sorted(marked) == sorted(found)
            page.screenshot(path=str(tmp_path / "multilabel.png"), full_page=True)
            page.goto(f"{server.url}/workspaces/default/runs/{child}")
            page.locator("#parent-run").click()
            page.wait_for_url(f"**/runs/{parent}", timeout=30_000)
            page.wait_for_selector("#evaluation:not([hidden])", timeout=30_000)
            page.locator("#per-label tbody tr").first.locator("a").click()  # bright's images
            page.wait_for_url("**/gallery?label=bright&all=1", timeout=30_000)
            shown = page.locator("#gallery li")
            rows = read_predictions(tagged.folder / PREDICTIONS_FILE)
            assert shown.count() == sum("bright" in (*r.true_labels, *r.predicted_labels) for r in rows) > 0
            shown.last.locator("img").scroll_into_view_if_needed()  # lazy thumbnails: each must load
            loaded = "(imgs) => imgs.every((img) => img.complete && img.naturalWidth > 0)"
            for _ in range(100):
                if page.eval_on_selector_all("#gallery img", loaded):
                    break
                page.wait_for_timeout(100)
            assert page.eval_on_selector_all("#gallery img", loaded)
            assert "bright: " in shown.first.inner_text()
            assert not problems, problems
        finally:
            browser.close()
