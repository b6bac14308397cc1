"""The review loop's targets: recording a decision <= 100 ms server side, a queue page <= 300 ms with 100,000 audit
rows (and as many queued reviews), two sessions deciding at once lose no row.

    python benchmarks/review_speed.py [--rows 100000] [--decisions 40]

A temporary workspace with the tiny test model; the rows are inserted directly, then the app's own functions are
timed (app/reviews.py: `queue`, `decide`). Writes benchmarks/review_speed.json and benchmarks/REVIEW.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fill(rows: int, image: Path) -> None:
    """``rows`` queued reviews for the session "bench" and as many audit rows (one transaction each table)."""
    from app import workspace

    store = workspace.store()
    now = time.time()
    rng = np.random.default_rng(0)
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO reviews (owner, batch, image_hash, image, name, model, category, gate, head, score, "
            "threshold, head_threshold, model_verdict, picture, mask, priority, created) "
            "VALUES ('bench', 'b', 'h', ?, 'x.png', 'toy', 'toy', 'control', 'fused', ?, 0.5, 0.5, ?, ?, ?, ?, ?)",
            [
                (str(image), float(s), "NG" if s >= 0.5 else "OK", str(image), str(image), abs(s / 0.5 - 1) + 1, now)
                for s in rng.uniform(0, 1, rows)
            ],
        )
        db.executemany(
            "INSERT INTO audit (image_hash, image, model, gate, score, threshold, model_verdict, human_verdict, who,"
            " at) VALUES ('h', 'x.png', 'toy', 'control', 0.4, 0.5, 'OK', 'OK', 'bench', ?)",
            [(now,)] * rows,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=40)
    a = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="easynet-review-"))
    os.environ["EASYNET_WORKSPACE"] = str(tmp / "ws")
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import make_mvtec3d_tree

    from app import reviews, sessions, workspace
    from easynet.runtime import machine

    make_mvtec3d_tree(tmp / "data", "toy", size=64, n_train=2, n_val=1, test={"good": 1, "hole": 1})
    image = tmp / "data" / "toy" / "test" / "hole" / "rgb" / "000.png"
    mask = workspace.own("reviews", "bench") / "mask.png"
    shutil.copy(tmp / "data" / "toy" / "test" / "hole" / "gt" / "000.png", mask)
    t0 = time.time()
    fill(a.rows, image)
    with workspace.store().transaction() as db:
        db.execute("UPDATE reviews SET mask = ?", (str(mask),))
    fill_s = time.time() - t0
    result = {"rows": a.rows, "fill_s": round(fill_s, 1), "machine": machine()}
    with sessions.as_owner("bench"):
        pages = []
        for page in range(0, 50, 5):
            start = time.perf_counter()
            reviews.queue(page)
            pages.append((time.perf_counter() - start) * 1000)
        ids = [r["id"] for r in reviews.queue(0, size=a.decisions)]
        times = []
        for i, review in enumerate(ids):
            start = time.perf_counter()
            reviews.decide(review, "NG" if i % 2 else "OK", "hole")
            times.append((time.perf_counter() - start) * 1000)
    result["queue_page_ms"] = {"p50": round(float(np.median(pages)), 1), "max": round(max(pages), 1)}
    result["decision_ms"] = {"p50": round(float(np.median(times)), 1), "p95": round(float(np.percentile(times, 95)), 1)}

    before = len(workspace.store().audit_rows())
    with sessions.as_owner("bench"):
        pending = [r["id"] for r in reviews.queue(0, size=60)]
    halves = {"bench": pending[:30], "bench2": pending[30:]}
    with workspace.store().transaction() as db:
        db.execute(
            f"UPDATE reviews SET owner = 'bench2' WHERE id IN ({', '.join('?' * 30)})", halves["bench2"]
        )  # two sessions, thirty reviews each

    def decide_all(owner: str) -> None:
        with sessions.as_owner(owner):
            for review in halves[owner]:
                reviews.decide(review, "OK")

    threads = [threading.Thread(target=decide_all, args=(o,)) for o in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = len(workspace.store().audit_rows()) - before
    result["concurrent"] = {"sessions": 2, "decisions": 60, "stored": stored}
    shutil.rmtree(tmp, ignore_errors=True)

    out = Path(__file__).with_name("review_speed.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    text = (
        "# Review loop: speed and concurrency\n\n"
        f"Written by `python benchmarks/review_speed.py --rows {a.rows}` on {m['cpu']}, {m['cores']} cores "
        f"(SQLite {__import__('sqlite3').sqlite_version}, WAL): "
        f"{a.rows:,} queued reviews and {a.rows:,} audit rows.\n\n"
        "| what | measured | target | |\n|---|---|---|---|\n"
        f"| a queue page (20 rows, NG and UNSURE first) | p50 {result['queue_page_ms']['p50']} ms, max "
        f"{result['queue_page_ms']['max']} ms | <= 300 ms | {met(result['queue_page_ms']['max'] <= 300)} |\n"
        f"| recording a decision (annotation files, index, audit row) | p50 {result['decision_ms']['p50']} ms, p95 "
        f"{result['decision_ms']['p95']} ms | <= 100 ms | {met(result['decision_ms']['p95'] <= 100)} |\n"
        f"| two sessions deciding 30 each at once | {stored} of 60 rows stored | none lost | {met(stored == 60)} |\n"
    )
    Path(__file__).with_name("REVIEW.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
