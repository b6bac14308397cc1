"""A real headless Chromium session (Playwright, the system's /usr/bin/chromium): upload, inspect, switch gate."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from app_helpers import REPO, load_demo, make_assets

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SCREENSHOT = REPO / "test-artifacts" / "browser.png"
TIMEOUT_MS = int(os.environ.get("EASYNET_BROWSER_TIMEOUT_MS", 120_000))

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_tree, tiny_checkpoint):
    old = os.environ.get("EASYNET_WORKSPACE")
    assets = make_assets(tmp_path_factory.mktemp("workspace"), tiny_tree, tiny_checkpoint)
    demo = load_demo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/", assets
    demo.close()
    if old is None:
        os.environ.pop("EASYNET_WORKSPACE", None)
    else:
        os.environ["EASYNET_WORKSPACE"] = old


def _upload(page, component: str, path: Path, done) -> None:
    """Upload into a component's file input; once more if it did not register (slow, shared CI machines)."""
    for attempt in range(2):
        page.locator(f"{component} input[type=file]").set_input_files(str(path))
        try:
            done.wait_for(timeout=TIMEOUT_MS // 2)
            return
        except Exception:
            if attempt:
                raise


def test_inspect_in_a_real_browser(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, assets = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.locator("#inspect-model input").first.wait_for(state="attached")
            _upload(page, "#inspect-rgb", assets.rgb, page.locator("#inspect-rgb img").first)
            _upload(page, "#inspect-depth", assets.depth, page.locator("#inspect-depth-preview img").first)
            page.locator("#inspect-run").click()
            page.locator("#inspect-heat img").first.wait_for()
            page.locator("#inspect-gate-md").get_by_text("control").first.wait_for()
            page.locator("#inspect-gate").get_by_text("close", exact=True).click()
            page.locator("#inspect-gate-md").get_by_text("RGB only").first.wait_for()
            page.locator("#inspect-cloud .js-plotly-plot").first.wait_for()
            assert page.locator("#inspect-heat img").first.get_attribute("src")
            verdict = page.locator("#inspect-verdict").inner_text()
            assert "OK" in verdict or "NG" in verdict
            page.wait_for_timeout(500)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        except Exception:
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT.with_name("browser-failure.png")), full_page=True)
            raise
        finally:
            browser.close()
