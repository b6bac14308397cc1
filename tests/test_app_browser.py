"""A real headless Chromium session (Playwright, the system's /usr/bin/chromium): the sample gallery and the verdict
banner, upload, inspect, switch gate, and a batch with its table, thumbnails and report."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from app_helpers import REPO, load_demo, make_assets

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT = REPO / "test-artifacts" / "browser.png"
SMALL_SCREEN = {"width": 1366, "height": 768}
TIMEOUT_MS = int(os.environ.get("EASYNET_BROWSER_TIMEOUT_MS", 120_000))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_tree, tiny_checkpoint):
    old = os.environ.get("EASYNET_WORKSPACE")
    assets = make_assets(tmp_path_factory.mktemp("workspace"), tiny_tree, tiny_checkpoint)
    demo = load_demo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from app.review_tab import KEYS_JS

    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, head=KEYS_JS)
    yield f"http://127.0.0.1:{port}/", assets
    demo.close()
    if old is None:
        os.environ.pop("EASYNET_WORKSPACE", None)
    else:
        os.environ["EASYNET_WORKSPACE"] = old


@contextmanager
def _page(p, failure: str, viewport: dict[str, int]) -> Iterator[Any]:
    """A page of a fresh headless Chromium; when the block fails, a full-page screenshot test-artifacts/<failure>."""
    browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    except Exception:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT.with_name(failure)), full_page=True)
        raise
    finally:
        browser.close()


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
    with sync_api.sync_playwright() as p, _page(p, "browser-failure.png", {"width": 1400, "height": 1300}) as page:
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


def test_gallery_banner_and_batch_in_a_real_browser(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, assets = server
    if not assets.rgb.is_relative_to(REPO / "samples"):
        pytest.skip("needs the shipped samples and checkpoints")
    category, kind = assets.rgb.parent.name, assets.rgb.name.removesuffix("_rgb.png")
    with sync_api.sync_playwright() as p, _page(p, "browser-failure.png", SMALL_SCREEN) as page:
        page.goto(url)
        thumb = page.locator("#inspect-samples").get_by_text(f"{category} · {kind}", exact=True)
        thumb.wait_for()
        box = thumb.bounding_box()  # every sample is on the first screen of a 1366x768 display
        last_name = sorted((REPO / "samples" / "tablet").glob("*_rgb.png"))[-1].name.removesuffix("_rgb.png")
        last = page.locator("#inspect-samples").get_by_text(f"tablet · {last_name}", exact=True).bounding_box()
        assert box and last and last["y"] + last["height"] <= SMALL_SCREEN["height"]
        thumb.click()
        banner = page.locator("#inspect-verdict .easynet-verdict")
        banner.wait_for()
        text = banner.inner_text()
        assert ("NG" in text or "OK" in text) and f"was trained on {category}" in text
        colour = banner.evaluate("e => getComputedStyle(e).borderColor")
        assert colour in ("rgb(198, 40, 40)", "rgb(46, 125, 50)")  # red NG or green OK
        assert category in page.locator("#inspect-model input").first.input_value()
        page.locator("#inspect-heat img").first.wait_for()

        page.get_by_role("tab", name="Batch").click()
        files = [assets.rgb, assets.depth, *sorted((REPO / "samples" / category).glob("good_*"))]
        page.locator("#batch-files input[type=file]").set_input_files([str(f) for f in files])
        # the uploads have arrived: the visible file row (Gradio may render the name twice, one copy hidden)
        page.locator("#batch-files").get_by_text(assets.rgb.name).filter(visible=True).first.wait_for()
        page.wait_for_timeout(1000)
        page.locator("#batch-run").click()
        page.locator("#batch-summary").get_by_text("2 / 2 images done").wait_for()
        table = page.locator("#batch-table").inner_text()  # one row per image in the sortable table
        assert kind in table and "good_0" in table and ("NG" in table or "OK" in table)
        page.locator("#batch-gallery img").nth(1).wait_for()
        page.locator("#batch-report a").first.wait_for()
        page.screenshot(path=str(SCREENSHOT.with_name("browser-batch.png")), full_page=True)


def test_annotate_saves_the_prefill_plus_a_brush_stroke_in_a_real_browser(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    import cv2

    from app import annotate

    url, assets = server
    with (
        sync_api.sync_playwright() as p,
        _page(p, "browser-annotate-failure.png", {"width": 1366, "height": 1000}) as page,
    ):
        page.goto(url)
        page.get_by_role("tab", name="Annotate").click()
        model = page.locator("#annotate-model input").first
        model.wait_for()
        page.locator("#annotate-category input, #annotate-category textarea").first.fill("browser_part")
        _upload(page, "#annotate-rgb", assets.rgb, page.locator("#annotate-status").get_by_text("Pre-filled"))
        page.wait_for_timeout(1500)  # the editor draws the picture
        _stroke(page, "#annotate-editor", 0.3, 0.9, 0.3)
        page.locator("#annotate-save").click()
        page.locator("#annotate-status").get_by_text("Saved").wait_for()
    from app import models

    name = models.list_models()[0].name  # the page's default model
    predicted = annotate.predicted_mask(cv2.imread(str(assets.rgb))[..., ::-1].copy(), None, name)
    saved = list(assets.workspace.glob("sessions/*/annotations/browser_part/test/scratch/gt/000.png"))
    assert len(saved) == 1  # the browser's own session data set
    gt = cv2.imread(str(saved[0]), cv2.IMREAD_GRAYSCALE) > 0
    assert predicted.any()  # else the test could not tell a kept pre-fill from a lost one
    assert (gt & predicted).sum() == predicted.sum()  # the pre-fill on screen is saved...
    assert (gt & ~predicted).sum() > 0  # ...together with the stroke painted over it


def test_a_reloaded_page_after_a_server_restart_shows_the_sessions_annotation(tiny_tree, tiny_checkpoint, tmp_path):
    """The session token lives in the browser, encrypted with a secret the workspace keeps: a restarted server
    recognises the returning browser and lists what it saved."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from app_helpers import Server

    (tmp_path / "ws" / "models").mkdir(parents=True)
    (tmp_path / "ws" / "models" / "toy.pt").write_bytes(tiny_checkpoint.read_bytes())
    server = Server(tmp_path / "ws", cwd=tmp_path).start()  # no shipped checkpoints here: the toy model only
    rgb = tiny_tree / "toy/test/good/rgb/000.png"
    try:
        with (
            sync_api.sync_playwright() as p,
            _page(p, "browser-restart-failure.png", {"width": 1366, "height": 1000}) as page,
        ):
            page.goto(server.url)
            page.get_by_role("tab", name="Annotate").click()
            page.locator("#annotate-category input, #annotate-category textarea").first.fill("kept_part")
            _upload(page, "#annotate-rgb", rgb, page.locator("#annotate-status").get_by_text("Pre-filled"))
            page.get_by_label("OK", exact=True).first.check()
            page.locator("#annotate-save").click()
            page.locator("#annotate-status").get_by_text("Saved").wait_for()
            server.stop()
            server.start()
            page.reload()
            page.get_by_role("tab", name="Annotate").click()
            entries = page.locator("#annotate-entries input").first
            entries.click()  # the list fills with this session's entries when it is opened
            page.get_by_text("kept_part:train/good/000").first.wait_for()
    finally:
        server.stop()


def test_the_review_loop_in_a_real_browser(server, tmp_path):
    """Batch -> review (4 confirmed, 2 overridden, one NG with a corrected mask; some by key) -> the operating point
    at a target -> a new version, active -> a new inspection uses its threshold; the audit trail holds exactly
    those decisions, model and person apart."""
    sync_api = pytest.importorskip("playwright.sync_api")
    import shutil

    url, assets = server
    if not (REPO / "samples" / "bracket").is_dir():
        pytest.skip("needs the shipped samples and checkpoints")
    folder = tmp_path / "line"
    folder.mkdir()
    samples = REPO / "samples" / "bracket"
    for name in ("good_02", "stain_00", "dent_00", "cut_00"):
        for ext in ("_rgb.png", "_xyz.tiff"):
            shutil.copy(samples / f"{name}{ext}", folder / f"{name}{ext}")
    for copy in ("good_a", "good_b"):  # two more good parts
        for ext in ("_rgb.png", "_xyz.tiff"):
            shutil.copy(samples / f"good_02{ext}", folder / f"{copy}{ext}")
    files = sorted(str(p) for p in folder.iterdir())
    decided = []
    with (
        sync_api.sync_playwright() as p,
        _page(p, "browser-review-failure.png", {"width": 1366, "height": 1000}) as page,
    ):
        page.goto(url)
        page.get_by_role("tab", name="Batch").click()
        page.locator("#batch-model input").first.wait_for()
        page.locator("#batch-files input[type=file]").set_input_files(files)
        page.locator("#batch-files").get_by_text("cut_00_rgb.png").filter(visible=True).first.wait_for()
        page.wait_for_timeout(1000)
        page.locator("#batch-run").click()
        page.locator("#batch-summary").get_by_text("6 / 6 images done").wait_for()

        page.get_by_role("tab", name="Review").click()
        page.locator("#review-refresh").click()
        page.locator("#review-waiting").get_by_text("6 image(s) wait").wait_for()
        overridden = {"OK": False, "NG": False}
        for i in range(6):
            item = page.locator("#review-item")
            item.get_by_text("said").wait_for()
            text = item.inner_text()
            said = "NG" if "said NG" in text else "OK" if "said OK" in text else "UNSURE"
            human = said if said != "UNSURE" else "OK"
            if said in overridden and not overridden[said]:  # the first OK and the first NG: overridden
                human, overridden[said] = ("NG" if said == "OK" else "OK"), True
            if human == "NG" and not any(d[2] for d in decided):  # one NG with a corrected mask
                page.wait_for_timeout(800)
                _stroke(page, "#review-editor", 0.2, 0.2, 0.2)
                page.locator("#review-ng").click()
                decided.append((said, human, True))
            elif i % 2:  # every other decision by key
                page.locator("#review-waiting").click()
                page.keyboard.press("o" if human == "OK" else "n")
                decided.append((said, human, False))
            else:
                page.locator("#review-ok" if human == "OK" else "#review-ng").click()
                decided.append((said, human, False))
            page.locator("#review-waiting").get_by_text(f"{5 - i} image(s) wait").wait_for()

        page.get_by_text("Operating point: set the threshold").click()
        page.locator("#review-share input").first.fill("0")
        page.locator("#review-find").click()
        page.locator("#review-counts").get_by_text("0 missed").wait_for()
        page.locator("#review-save").click()
        page.locator("#review-version").get_by_text("Saved").wait_for()
        saved_text = page.locator("#review-version").inner_text()

        page.get_by_role("tab", name="Inspect").click()
        page.locator("#inspect-samples").get_by_text("bracket · cut_00", exact=True).click()
        banner = page.locator("#inspect-verdict .easynet-verdict")
        banner.wait_for()
        banner_text = banner.inner_text()

    from easynet.checkpoint import load_checkpoint
    from easynet.store import Store

    store = Store(assets.workspace)
    rows = store.audit_rows(model="bracket")[-6:]
    assert [(r["model_verdict"], r["human_verdict"]) for r in rows] == [(s, h) for s, h, _ in decided]
    assert sum(s != h for s, h, _ in decided) == 2 and sum(s == h for s, h, _ in decided) == 4
    owner = store.query("SELECT owner FROM reviews WHERE id = ?", (rows[0]["review"],))[0]["owner"]
    version = store.query(
        "SELECT version, path, active FROM models WHERE owner = ? AND name = 'bracket' ORDER BY version DESC", (owner,)
    )[0]
    assert version["active"] and f"bracket v{version['version']}" in saved_text
    new = load_checkpoint(version["path"]).calibration
    thresholds = {f"{new.rgb.threshold:.4f}", f"{new.fused.threshold:.4f}"}
    assert any(t in banner_text for t in thresholds), (banner_text, thresholds)  # the new version judged it


def _stroke(page, editor: str, fx: float, fy: float, fw: float) -> None:
    """One horizontal brush stroke in an image editor, from (fx, fy) of its canvas over a share fw of its width."""
    box = page.locator(f"{editor} canvas").first.bounding_box()
    page.locator(f"{editor} button[aria-label='Brush']").first.click()
    x, y = box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + box["width"] * fw, y, steps=10)
    page.mouse.up()
    page.wait_for_timeout(500)
