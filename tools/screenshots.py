"""Screenshots of the app for docs/screenshots/: `python tools/screenshots.py` (headless /usr/bin/chromium).

Starts the app on a free port with a temporary workspace, walks Inspect (sample gallery, verdict banner), Batch (the
gasket samples), Review (their queue, then the operating point), Compare and Annotate at 1366 px wide, and writes
one PNG per view. Never downloads a browser.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 768}
SAMPLE = ("gasket", "dent_00")


def _pick_model(page, elem_id: str, name: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option").filter(has_text=f"{name} (").first.click()


def more_parts(category: str) -> list[Path]:
    """Three more good parts and one of each defect kind, rendered (seed 7) and named as a line would name them."""
    from easynet.data.synthetic import generate

    root = generate(tempfile.mkdtemp(prefix="easynet-parts-"), [category], 400, 0, 0, 3, 1, seed=7)[0] / "test"
    out = []
    for rgb in sorted(root.glob("*/rgb/*.png")):
        name = f"{rgb.parents[1].name}_{int(rgb.stem) + 1:02d}"
        for src, suffix in ((rgb, "_rgb.png"), (rgb.parents[1] / "xyz" / f"{rgb.stem}.tiff", "_xyz.tiff")):
            out.append(src.rename(src.parent / f"{name}{suffix}"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    a = parser.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["EASYNET_WORKSPACE"] = tempfile.mkdtemp(prefix="easynet-shots-")
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from app_helpers import load_demo
    from playwright.sync_api import sync_playwright

    demo = load_demo()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    category, kind = SAMPLE
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#inspect-samples").get_by_text(f"{category} · {kind}", exact=True).wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "first_view_1366x768.png"))
            page.locator("#inspect-samples").get_by_text(f"{category} · {kind}", exact=True).click()
            page.locator("#inspect-verdict .easynet-verdict").wait_for()
            page.locator("#inspect-cloud .js-plotly-plot").wait_for()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "inspect.png"), full_page=True)

            page.get_by_role("tab", name="Batch").click()
            _pick_model(page, "batch-model", category)
            files = sorted(p for p in (REPO / "samples" / category).iterdir() if not p.name.endswith("_gt.png"))
            files += more_parts(category)  # a line's worth: enough judged parts of each kind for an operating point
            page.locator("#batch-files input[type=file]").set_input_files([str(f) for f in files])
            page.locator("#batch-files").get_by_text(files[0].name).first.wait_for()
            page.wait_for_timeout(1000)
            page.locator("#batch-run").click()
            page.locator("#batch-summary").get_by_text("images done").wait_for()
            page.locator("#batch-report a").first.wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "batch.png"), full_page=True)

            page.get_by_role("tab", name="Review").click()  # the batch's images wait in the queue
            page.locator("#review-refresh").click()
            page.locator("#review-waiting").get_by_text("wait for a verdict").wait_for()
            page.locator("#review-item").get_by_text("said").wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "review.png"), full_page=True)
            for _ in range(20):  # judge the queue as a person would: good parts OK, the rest NG
                text = page.locator("#review-item").inner_text()
                if "queue is empty" in text:
                    break
                page.locator("#review-ok" if "good_" in text else "#review-ng").click()
                page.locator("#review-saved").get_by_text(f"Saved: {text.split(' · ')[0]} is").wait_for()
                page.wait_for_function(  # the next item has opened (no progress text left)
                    "() => { const s = document.querySelector('#review-item').innerText; return "
                    "(s.includes(' said ') || s.includes('queue is empty')) && !/[0-9]s$/m.test(s); }",
                    timeout=60_000,
                )
            page.get_by_text("Operating point: set the threshold").click()
            _pick_model(page, "review-model", category)
            page.locator("#review-find").click()
            page.locator("#review-counts").get_by_text("miss").wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "review_operating_point.png"), full_page=True)

            page.get_by_role("tab", name="Compare").click()
            page.get_by_role("button", name=f"{category} · {kind}", exact=True).click()
            page.wait_for_function(f"document.querySelector('#compare-model input').value.startsWith('{category} (')")
            page.get_by_role("button", name="Compare the gates").click()
            page.get_by_text("control chose").wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "compare.png"), full_page=True)

            page.get_by_role("tab", name="Annotate").click()
            _pick_model(page, "annotate-model", category)
            page.locator("#annotate-rgb input[type=file]").set_input_files(
                str(REPO / "samples" / category / f"{kind}_rgb.png")
            )
            page.locator("#annotate-status").get_by_text("Pre-filled").wait_for()
            page.locator("#annotate-depth input[type=file]").set_input_files(
                str(REPO / "samples" / category / f"{kind}_xyz.tiff")
            )  # the depth upload pre-fills again
            page.locator("#annotate-status").get_by_text("RGB + depth").wait_for()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "annotate.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"screenshots written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
