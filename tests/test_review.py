"""The review loop: inspected images queue up, a person's verdicts become annotated images, audit rows, the
operating point and a new model version; rollback; two sessions deciding at once lose nothing."""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from easynet.errors import InputError


@pytest.fixture()
def loop(assets, tmp_path, monkeypatch):
    """A fresh workspace with the toy model, and the tiny tree's images (good ones and holes) to inspect."""
    import shutil

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    (tmp_path / "ws" / "models").mkdir(parents=True)
    shutil.copy(assets.workspace / "models" / "toy.pt", tmp_path / "ws" / "models" / "toy.pt")
    root = assets.data_root / "toy"
    good = sorted((root / "train" / "good" / "rgb").glob("*.png")) + sorted((root / "test/good/rgb").glob("*.png"))
    holes = sorted((root / "test" / "hole" / "rgb").glob("*.png"))
    return good, holes


def _inspect(rgb: Path, model: str = "toy") -> dict:
    from app import inspect_tab

    depth = rgb.parent.parent / "xyz" / f"{rgb.stem}.tiff"
    return inspect_tab.predict(str(rgb), str(depth), model, "control")[8]


def test_queue_order_decisions_annotations_and_the_audit_trail(loop):
    from app import reviews, sessions, workspace

    good, holes = loop
    with sessions.as_owner("rita"):
        results = [_inspect(p) for p in [*good[:3], *holes]]
        ids = [r["review_id"] for r in results]
        queue = reviews.queue()
        assert {r["id"] for r in queue} == set(ids)
        assert sorted(r["name"] for r in queue) == sorted(p.stem for p in [*good[:3], *holes])  # as a batch names them
        order = [(r["model_verdict"] in ("NG", "UNSURE"), -abs(r["score"] / r["threshold"] - 1)) for r in queue]
        assert order == sorted(order, reverse=True)  # NG/UNSURE first, then the nearest the threshold
        first = reviews.decide(ids[0], "OK")
        second = reviews.decide(ids[3], "NG", "hole")  # the model's mask
        mask = np.zeros((64, 64), bool)
        mask[10:20, 10:20] = True
        third = reviews.decide(ids[4], "NG", "hole", mask)  # a corrected mask
        assert reviews.waiting() == len(ids) - 3 and ids[0] not in {r["id"] for r in reviews.queue()}
        entries = workspace.list_annotations("toy")
        assert {first["entry"], second["entry"], third["entry"]} == set(entries)
        files = workspace.entry_files("toy", third["entry"].split(":", 1)[1])
        from easynet.data.io import read_mask

        assert np.array_equal(read_mask(files["gt"]) > 0, mask)  # the corrected mask, exactly
        rows = workspace.store().audit_rows()
        assert [(r["review"], r["human_verdict"]) for r in rows] == [(ids[0], "OK"), (ids[3], "NG"), (ids[4], "NG")]
        assert [r["model_verdict"] for r in rows] == [results[i]["summary"]["verdict"] for i in (0, 3, 4)]
        assert all(r["who"] == "rita" and r["model"] == "toy" for r in rows)
        assert rows[2]["mask"] == "toy/test/hole/gt/001.png" and rows[0]["mask"] is None
        with pytest.raises(Exception, match="append-only"):
            workspace.store().db.execute("UPDATE audit SET human_verdict = 'OK'")
    with sessions.as_owner("someone-else"), pytest.raises(InputError, match=f"there is no review {ids[1]}"):
        reviews.decide(ids[1], "OK")  # another session's review does not exist for it


def test_audit_csv_from_the_tab_and_the_cli(loop, capsys):
    from app import review_tab, reviews, sessions, workspace
    from easynet.cli import main

    good, _ = loop
    with sessions.as_owner("carl"):
        reviews.decide(_inspect(good[0])["review_id"], "OK")
        path = review_tab.export()
    table = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert len(table) == 1 and table[0]["human_verdict"] == "OK" and table[0]["who"] == "carl"
    assert main(["audit", "--workspace", str(workspace.root())]) == 0
    assert capsys.readouterr().out == Path(path).read_text()


def test_the_operating_point_becomes_a_new_version_that_inspection_uses_and_rollback_restores(loop):
    from app import models, review_tab, reviews, sessions

    good, holes = loop
    with sessions.as_owner("olga"):
        judged = [(p, "OK") for p in good[:4]] + [(p, "NG") for p in holes + holes[:1]]
        ratios, paths = {}, {}
        for path, verdict in judged:
            result = _inspect(path)
            ratios.setdefault(verdict, []).append(result["score"] / result["threshold"])
            paths.setdefault(verdict, []).append(path)
            reviews.decide(result["review_id"], verdict, "hole" if verdict == "NG" else None)
        # hand-computed target: miss no defect -> below the lowest NG ratio, half-way to the next ratio under it
        lowest = min(ratios["NG"])
        under = [r for r in ratios["OK"] + ratios["NG"] if r < lowest]
        cut = reviews.cutoff("toy", "miss", 0.0)
        assert cut < lowest and cut == pytest.approx((lowest + max(under)) / 2 if under else lowest, rel=1e-6)
        before = models.find("toy")
        version = reviews.save_version("toy", cut, {"kind": "miss at most", "percent": 0})
        after = models.find("toy")
        assert version == 2 and after.version == 2 and after.path != before.path
        again = _inspect(paths["NG"][ratios["NG"].index(lowest)])  # the judged defect nearest the new threshold
        old = before_threshold(before, again["used"])
        assert again["version"] == 2 and again["threshold"] == pytest.approx(old * cut, rel=1e-5)
        assert again["score"] >= again["threshold"]  # so every judged defect is flagged at this point
        table = review_tab.versions("toy")["value"]
        assert [row[:2] for row in table] == [[1, ""], [2, "active"]] and table[1][2] == "toy v1"
        models.activate("toy", 1)  # roll back
        restored = _inspect(holes[0])
        old = before_threshold(before, restored["used"])
        assert restored["version"] == 1 and restored["threshold"] == pytest.approx(old)
    with sessions.as_owner("pete"):
        assert models.find("toy").version == 1  # another session keeps the shared model


def before_threshold(info, head: str) -> float:
    from easynet.checkpoint import load_checkpoint

    return load_checkpoint(info.path).calibration.head(head == "fused").threshold


def test_a_batch_report_counts_misses_and_false_rejects(loop):
    from app import batch_tab, reviews, sessions

    good, holes = loop
    files = []
    for p in [good[0], holes[0]]:
        files += [str(p), str(p.parent.parent / "xyz" / f"{p.stem}.tiff")]
    with sessions.as_owner("bea"):
        *_, last = batch_tab.run(files, "toy", "control", 1.0, type("R", (), {"session_hash": "b"})())
        rows = {r["name"]: r for r in last[4]["rows"]}
        batch = reviews.batches()[0]
        queued = {r["name"]: r for r in reviews.queue()}
        assert set(queued) == set(rows)  # every batch image joined the queue, named
        verdicts = {name: ("NG" if rows[name]["verdict"] == "OK" else "OK") for name in rows}  # the person disagrees
        for name, verdict in verdicts.items():
            reviews.decide(queued[name]["id"], verdict, "hole")
        report = reviews.batch_report(batch)
        model_ok = sum(r["verdict"] == "OK" for r in rows.values())
        model_ng = sum(r["verdict"] == "NG" for r in rows.values())
        assert report["judged"] == report["images"] == 2
        assert (report["misses"], report["false_rejects"]) == (model_ok, model_ng)


def test_two_sessions_deciding_at_once_lose_no_row(loop):
    from app import reviews, sessions, workspace

    good, _ = loop
    ids = {}
    for owner in ("ann", "ben"):
        with sessions.as_owner(owner):
            ids[owner] = [_inspect(good[i % len(good)])["review_id"] for i in range(6)]
    errors = []

    def decide_all(owner: str) -> None:
        try:
            with sessions.as_owner(owner):
                for review in ids[owner]:
                    reviews.decide(review, "OK")
        except Exception as err:  # pragma: no cover - the assertion below reports it
            errors.append(err)

    threads = [threading.Thread(target=decide_all, args=(o,)) for o in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = workspace.store().audit_rows()
    assert not errors and sorted(r["review"] for r in rows) == sorted(ids["ann"] + ids["ben"])
    for owner in ids:
        with sessions.as_owner(owner):
            assert len(workspace.list_annotations("toy")) == 6  # one entry per decision, none overwritten


def test_review_handlers_refuse_bad_input_with_a_sentence(loop):
    from app import review_tab

    with pytest.raises(gr.Error, match="open an image of the queue first"):
        review_tab.decide_ok("", "", None)
    with pytest.raises(gr.Error, match="the verdict must be OK or NG"):
        review_tab.decide_api(1, "MAYBE")
    with pytest.raises(gr.Error, match="is not a review id"):
        review_tab.decide_api("abc", "OK")
    # what an API client can send in raw JSON: NaN, infinity, text, fractions
    with pytest.raises(gr.Error, match="the page must be a whole number, got nan"):
        review_tab.load(float("nan"))
    with pytest.raises(gr.Error, match="the version must be a whole number, got 1.5"):
        review_tab.rollback("toy", 1.5)
    with pytest.raises(gr.Error, match=r"the cut-off must be a number \(1 = today's threshold\), got inf"):
        review_tab.save("toy", float("inf"), review_tab.TARGETS[0], 1.0)
    with pytest.raises(gr.Error, match="the target must be a percentage, got 'ten'"):
        review_tab.find("toy", review_tab.TARGETS[0], "ten")


def test_a_fine_tune_from_the_reviewed_set_calibrates_on_its_judged_defects(loop):
    """Retrain from the reviewed set: judged good parts train it, judged defects join calibration and the check
    against the model it started from, and the result goes through the same never-silently-worse listing."""
    from app import finetune, jobs, reviews, sessions

    good, holes = loop
    with sessions.as_owner("line"):
        ids = [_inspect(p)["review_id"] for p in [*good, *holes]]
        for review in ids[: len(good)]:
            reviews.decide(review, "OK")
        for review in ids[len(good) :]:
            reviews.decide(review, "NG", "hole")
        job_id, status, _ = finetune.start("annotated", None, "toy", None, "toy", 2)
        job = jobs.runner().wait(job_id, timeout=300)
    assert job.state == "done", job.error
    assert job.own_defects and job.metrics["n_real_defects"] == len(holes)
    assert job.parent_metrics["n_real_defects"] == len(holes)  # the parent is judged on the same defects
    assert job.worse is not None  # compared, so a worse fine-tune is marked and never made the default
