"""Training from the browser, on a token-protected server, in headless Chromium under the portal's real CSP:
sign in, upload a small zip on the New training page, see its labels and counts and data report, start the
run, follow it to Completed on its page, download MLModel.zip; the home page then links the run and the asset."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.imagery import make_image_folder

from .conftest import TOKEN, LiveServer
from .test_browser import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, watch_problems

LONG_MS = 300_000

pytestmark = BROWSER_MARKS


def zipped(folder: Path, target: Path) -> Path:
    """The folder as a browser user zips it: one top folder, a folder per label inside."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, Path(folder.name, path.relative_to(folder)).as_posix())
    return target


def test_new_training_uploads_a_zip_starts_the_run_and_downloads_the_model(
        start_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    archive = zipped(make_image_folder(tmp_path / "pets", per_label=6), tmp_path / "pets.zip")
    server = start_server("--token", TOKEN)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            problems = watch_problems(page)
            page.goto(server.url + "/new")
            page.fill("input[name=token]", TOKEN)  # the token-protected server sends us to sign in first
            page.press("input[name=token]", "Enter")
            page.wait_for_url(server.url + "/new")
            try:
                page.set_input_files("#data-file", str(archive))
                page.fill("#asset-name", "pets")
                page.click("#upload-button")
                expect(page.locator("#data-labels tr[data-label=cat] td").nth(1)).to_have_text("6", timeout=60_000)
                expect(page.locator("#data-labels tr[data-label=dog] td").nth(1)).to_have_text("6")
                expect(page.locator("#chosen-data")).to_have_text("pets:1")
                expect(page.locator("#data-report")).to_contain_text("12 images in 2 labels")
                page.select_option("#priority-select", "low-priority")  # the workspace has no such compute
                expect(page.locator("#priority-none")).to_be_visible()
                expect(page.locator("#start-training")).to_be_disabled()
                page.select_option("#priority-select", "dedicated")
                expect(page.locator("#compute-select")).to_have_value("local")
                page.fill("#project-name", "Tiny")
                page.click("details summary")
                page.select_option("#architecture", "tiny")
                page.select_option("#weights", "none")
                page.fill("#epochs", "1")
                page.fill("#image-size", "32")
                page.click("#start-training")
                page.wait_for_url("**/workspaces/default/runs/run-*", timeout=60_000)
                expect(page.locator("#run-status")).to_have_text("Completed", timeout=LONG_MS)
                with page.expect_download() as download_info:
                    page.click("#download-mlmodel")
                model = tmp_path / "MLModel.zip"
                download_info.value.save_as(model)
                with zipfile.ZipFile(io.BytesIO(model.read_bytes())) as package:
                    assert {"pipeline.json", "bestModel.onnx", "bestModelMap.json"} <= set(package.namelist())
                run_path = page.url.removeprefix(server.url)

                page.goto(server.url + "/")
                expect(page.locator(f"#recent-runs a[href='{run_path}']")).to_be_visible()
                page.click("#data-assets a[href='/workspaces/default/data/pets']")
                expect(page.locator("#data-labels")).to_contain_text("dog")
                assert problems == []
            except Exception:
                page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
                print("server:", server.stop()[-3000:])
                raise
        finally:
            browser.close()


def test_a_folder_chosen_in_the_browser_is_zipped_there_and_uploaded(start_server: Callable[..., LiveServer],
                                                                      tmp_path: Path) -> None:
    """The folder input: the page zips the folder itself (stored, CRC-32) and the server reads it as any zip."""
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    folder = make_image_folder(tmp_path / "garden", per_label=4, labels=("rose", "tulip", "daisy"))
    (folder / "rose" / "notes.png").write_text("not an image")
    server = start_server("--no-agent")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems = watch_problems(page)
            page.goto(server.url + "/new")
            page.set_input_files("#data-folder", str(folder))
            page.click("#upload-button")
            expect(page.locator("#chosen-data")).to_have_text("garden:1", timeout=60_000)
            for label in ("rose", "tulip", "daisy"):
                expect(page.locator(f"#data-labels tr[data-label={label}] td").nth(1)).to_have_text("4")
            expect(page.locator("#data-report")).to_contain_text("skipped rose/notes.png: not an image")
            assert problems == []
        finally:
            browser.close()
