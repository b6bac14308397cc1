"""Batch inspection (easynet.batch, `easynet predict` on a folder, the Batch tab): N images -> N rows and a zip
with N overlays; pairing by name; the verdict scale puts the threshold in the middle of the colour bar."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from easynet.errors import InputError


def _folder(tiny_tree: Path, out: Path) -> Path:
    """Four pairs in the three naming styles a batch accepts, plus a mask and an RGB-only image."""
    out.mkdir()
    src = tiny_tree / "toy" / "test"
    shutil.copy(src / "hole/rgb/000.png", out / "a.png")
    shutil.copy(src / "hole/xyz/000.tiff", out / "a.tiff")
    shutil.copy(src / "hole/rgb/001.png", out / "b_rgb.png")
    shutil.copy(src / "hole/xyz/001.tiff", out / "b_xyz.tiff")
    shutil.copy(src / "hole/gt/001.png", out / "b_mask.png")  # skipped
    (out / "lot").mkdir()
    for d in ("rgb", "xyz"):
        (out / "lot" / d).mkdir()
    shutil.copy(src / "good/rgb/000.png", out / "lot/rgb/c.png")
    shutil.copy(src / "good/xyz/000.tiff", out / "lot/xyz/c.tiff")
    shutil.copy(src / "good/rgb/001.png", out / "d.png")  # no depth: RGB only
    return out


def test_files_are_paired_by_name(tiny_tree, tmp_path):
    from easynet.batch import collect

    items = {i.name: i for i in collect([_folder(tiny_tree, tmp_path / "in")])}
    assert sorted(items) == ["a", "b", "c", "d"]
    assert items["a"].depth.name == "a.tiff" and items["b"].depth.name == "b_xyz.tiff"
    assert items["c"].depth == tmp_path / "in/lot/xyz/c.tiff" and items["d"].depth is None
    with pytest.raises(InputError, match="no RGB image"):
        collect([tmp_path / "in" / "a.tiff"])


def test_files_uploaded_one_by_one_pair_by_name_across_folders(tiny_tree, tmp_path):
    from easynet.batch import collect

    folder = _folder(tiny_tree, tmp_path / "in")
    uploads = []
    for i, name in enumerate(["a.png", "a.tiff", "b_rgb.png", "b_xyz.tiff", "d.png"]):
        target = tmp_path / "gradio" / f"hash{i}" / name  # a browser upload: each file in its own folder
        target.parent.mkdir(parents=True)
        shutil.copy(folder / name, target)
        uploads.append(target)
    items = {i.name: i for i in collect(uploads)}
    assert items["a"].depth == uploads[1] and items["b"].depth == uploads[3] and items["d"].depth is None


def test_unsafe_zip_is_refused(tmp_path):
    from easynet.batch import collect

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.png", b"x")
    with pytest.raises(InputError, match="plain relative paths"):
        collect([bad], scratch=tmp_path / "s")
    assert not (tmp_path / "evil.png").exists()


def test_batch_of_n_images_gives_n_rows_and_a_zip_with_n_overlays(tiny_tree, tiny_checkpoint, tmp_path):
    from easynet.batch import collect, run_batch
    from easynet.predict import Predictor

    folder = _folder(tiny_tree, tmp_path / "in")
    (folder / "broken.png").write_text("not a picture")
    items = collect([folder])
    rows, archive = run_batch(Predictor.from_checkpoint(tiny_checkpoint, "cpu"), items, tmp_path / "out")
    assert [r["name"] for r in rows] == [i.name for i in items] and len(rows) == 5
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["verdict"] == "error" and "not a readable image" in broken["reason"]
    good = [r for r in rows if r["verdict"] != "error"]
    for r in good:  # OK/NG by the threshold, UNSURE only with its reason (e.g. an atypical part)
        plain = "NG" if r["score"] >= r["threshold"] else "OK"
        assert r["verdict"] == plain or (r["verdict"] == "UNSURE" and r["reason"])
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert sorted(n for n in names if n.startswith("overlays/")) == sorted(
            f"overlays/{r['name']}.png" for r in good
        )
        table = list(csv.DictReader(io.StringIO(zf.read("report.csv").decode())))
        report = json.loads(zf.read("report.json"))
    assert [t["name"] for t in table] == [r["name"] for r in rows] and report["counts"]["error"] == 1
    assert report["done"] == report["total"] == 5 and not report["cancelled"]


def test_an_rgb_only_image_for_an_rgbd_model_is_unsure_in_the_report(tiny_tree, tiny_checkpoint, tmp_path):
    from easynet.batch import collect, run_batch
    from easynet.predict import Predictor

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(tiny_tree / "toy/test/good/rgb/000.png", folder / "alone.png")  # no depth file beside it
    rows, archive = run_batch(Predictor.from_checkpoint(tiny_checkpoint, "cpu"), collect([folder]), tmp_path / "out")
    (row,) = rows
    assert row["depth"] == "" and row["verdict"] in ("UNSURE", "NG")  # never OK without depth
    with zipfile.ZipFile(archive) as zf:
        (line,) = list(csv.DictReader(io.StringIO(zf.read("report.csv").decode())))
    assert line["verdict"] == row["verdict"] and line["reason"] == (row["reason"] or "")


def test_progress_returning_false_stops_and_still_reports(tiny_tree, tiny_checkpoint, tmp_path):
    from easynet.batch import collect, run_batch
    from easynet.predict import Predictor

    items = collect([_folder(tiny_tree, tmp_path / "in")])
    rows, archive = run_batch(
        Predictor.from_checkpoint(tiny_checkpoint, "cpu"),
        items,
        tmp_path / "out",
        progress=lambda done, total: done < 2,
    )
    assert len(rows) == 2
    with zipfile.ZipFile(archive) as zf:
        report = json.loads(zf.read("report.json"))
    assert report["cancelled"] and report["done"] == 2 and report["total"] == 4


def test_ng_maps_reach_the_threshold_colour_and_ok_maps_keep_their_filtered_max_below(tiny_tree, tiny_checkpoint):
    import torch

    from easynet.predict import Predictor
    from easynet.scoring import image_scores
    from easynet.visualize import THRESHOLD_LEVEL, verdict_scale

    predictor = Predictor.from_checkpoint(tiny_checkpoint, "cpu")
    for sensitivity in (0.5, 1.0, 4.0):
        p = predictor.predict(
            tiny_tree / "toy/test/hole/rgb/000.png", tiny_tree / "toy/test/hole/xyz/000.tiff", sensitivity=sensitivity
        )
        heat = p.heatmap
        if p.is_anomalous:
            assert heat.max() >= THRESHOLD_LEVEL
        # the verdict is the filtered map against the threshold, which sits at THRESHOLD_LEVEL on the scale
        floor = predictor.calibration.head(p.used == "fused").pixel_low
        filtered = float(image_scores(torch.from_numpy(p.anomaly_map)[None], predictor.cfg.image_size)[0])
        assert (verdict_scale(np.array([filtered]), floor, p.threshold)[0] >= THRESHOLD_LEVEL) == p.is_anomalous
    assert np.allclose(verdict_scale(np.array([0.2, 0.3, 0.4, 0.9]), 0.2, 0.3), [0.0, 0.5, 1.0, 1.0])


def test_cli_predict_on_a_folder(tiny_tree, tiny_checkpoint, tmp_path, capsys):
    from easynet.cli import main

    folder = _folder(tiny_tree, tmp_path / "in")
    out = tmp_path / "report"
    code = main(["predict", "--checkpoint", str(tiny_checkpoint), "--rgb", str(folder), "--out", str(out)])
    printed = capsys.readouterr().out
    verdicts = [r["verdict"] for r in json.loads((out / "report.json").read_text())["images"]]
    assert code == (3 if "NG" in verdicts else 4 if "UNSURE" in verdicts else 0)  # the worst verdict
    assert "4 images:" in printed and all(f"{n} " in printed for n in "abcd")
    assert len(list((out / "overlays").glob("*.png"))) == 4 and (out / "report.csv").is_file()
    assert out.with_suffix(".zip").is_file()


class _Request:
    session_hash = "test-session"


def test_batch_tab_streams_rows_cancels_and_zips(assets, tiny_tree, tmp_path):
    from app import batch_tab

    folder = _folder(tiny_tree, tmp_path / "in")
    files = [str(p) for p in sorted(folder.rglob("*")) if p.is_file()]
    *_, last = batch_tab.run(files, assets.model, "control", 1.0, _Request())
    table, gallery, summary, archive, report = last
    assert len(table) == 4 and len(gallery) == 4 and "4 / 4 images done" in summary
    assert sorted(row[0] for row in table) == list("abcd") and all(row[2] in ("OK", "NG", "UNSURE") for row in table)
    with zipfile.ZipFile(archive) as zf:
        assert len([n for n in zf.namelist() if n.startswith("overlays/")]) == 4
    assert report["done"] == 4 and len(report["rows"]) == 4

    runs = batch_tab.run(files, assets.model, "control", 1.0, _Request())
    first = next(runs)  # the first image is done; Cancel arrives while the batch runs
    assert len(first[0]) == 1 and first[3] is None
    assert "Cancelling" in batch_tab.cancel(_Request())
    *_, last = runs
    assert len(last[0]) == 2 and "cancelled" in last[2] and last[4]["cancelled"]

    with pytest.raises(gr.Error, match="upload RGB images"):
        list(batch_tab.run([], assets.model, "control", 1.0, _Request()))


def test_batch_reports_live_in_the_session_folder_and_go_with_it(assets, tiny_tree, tmp_path):
    from app import batch_tab, sessions, workspace

    folder = _folder(tiny_tree, tmp_path / "in")
    files = [str(p) for p in sorted(folder.rglob("*")) if p.is_file()]
    with sessions.as_owner("carol"):
        *_, last = batch_tab.run(files, assets.model, "control", 1.0, _Request())
    archive = Path(last[3])
    assert archive.is_relative_to(workspace.folder("carol")) and archive.is_file()
    others = {p.name for p in workspace.folder("carol").parent.iterdir()} - {"carol"}  # other tests' sessions
    assert workspace.sweep_sessions(others, max_age_s=-1) == ["carol"]  # an expired session takes its reports
    assert not archive.exists()


def test_pair_name_is_the_name_a_batch_gives_the_pair(tmp_path):
    from easynet.batch import collect, pair_name

    for name in ("dent_00_rgb.png", "dent_00_xyz.tiff"):
        (tmp_path / name).write_bytes(b"")
    (pair,) = collect([tmp_path])
    assert pair.name == pair_name(pair.rgb) == pair_name(tmp_path / "dent_00_xyz.tiff") == "dent_00"
    assert pair_name("part/rgb/000.png") == "000" and pair_name("scan.depth.png") == "scan.depth"
