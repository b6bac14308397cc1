"""The app's handlers called directly (no server): predict, gate re-render, annotation, zip safety, jobs."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
import tifffile

from easynet.errors import InputError
from easynet.results import TrainSummary

REPO = Path(__file__).resolve().parents[1]

JSON_FIELDS = {
    "model",
    "version",
    "review_id",
    "category",
    "sensitivity",
    "typicality",
    "candidates",
    "score",
    "normalized_score",
    "is_anomalous",
    "threshold",
    "gate",
    "used",
    "entropy_rgb",
    "entropy_fused",
    "alpha",
    "gate_rule",
    "head_scores",
    "gate_reason",
    "entropy_rule_head",
    "has_depth",
    "image_size",
    "timings_ms",
    "summary",
}


def test_registry_lists_the_model_with_its_facts(assets):
    from app import models

    info = models.find(assets.model)
    assert info.category and info.preset and info.image_size
    assert assets.model in [name for _, name in models.choices()]
    cache = models.PredictorCache(size=1)
    assert cache.get(assets.model) is cache.get(assets.model) and len(cache) == 1
    with pytest.raises(InputError, match="no model called"):
        models.find("does-not-exist")


def test_the_server_backend_comes_from_the_environment(assets, monkeypatch):
    from app import models

    monkeypatch.setenv(models.BACKEND_ENV, "eager")
    assert models.PredictorCache(size=1).get(assets.model).runner.backend == "eager"
    monkeypatch.setenv(models.BACKEND_ENV, "tensorrt")
    with pytest.raises(InputError, match="backend must be one of"):
        models.PredictorCache(size=1).get(assets.model)


@pytest.mark.parametrize("gate", ["close", "open", "control"])
def test_predict_in_each_gate(assets, gate):
    from app import inspect_tab

    out = inspect_tab.predict(str(assets.rgb), str(assets.depth), assets.model, gate)
    verdict, heat, rgb_in, rec_rgb, depth_in, rec_depth, gate_md, fig, result, state = out
    assert set(result) == JSON_FIELDS and result["gate"] == gate and result["has_depth"]
    original = cv2.imread(str(assets.rgb)).shape
    assert heat.shape[1] % original[1] == 0 and heat.shape[0] > heat.shape[1] >= original[1]  # + the colour bar
    assert heat.dtype == np.uint8
    assert rec_rgb.shape == rgb_in.shape and depth_in.ndim == 3 and rec_depth.ndim == 3
    label = result["summary"]["verdict"]
    assert f"verdict-{label.lower()}" in verdict and "was trained on" in verdict
    assert label == ("NG" if result["is_anomalous"] else "OK") or result["summary"]["reason"] in verdict
    assert fig.data and fig.data[0].type == "scatter3d" and fig.layout.height
    assert len(fig.data[0].x) <= 40_000
    if gate == "close":
        assert result["used"] == "rgb"
    assert f"`{gate}`" in gate_md and state["rgb"] == str(assets.rgb)
    if gate == "control":  # the score rule decides; the paper's entropies and alpha are shown beside it
        paper = "RGB + depth (fused)" if result["entropy_rule_head"] == "fused" else "RGB only"
        assert result["head_scores"] and f"alpha {result['alpha']:.4f}" in gate_md
        assert f"entropy RGB {result['entropy_rgb']:.4f}" in gate_md and f"would use the {paper} head" in gate_md


def test_gate_change_rerenders_from_the_stored_inputs(assets):
    from app import inspect_tab

    state = inspect_tab.predict(str(assets.rgb), str(assets.depth), assets.model, "control")[-1]
    out = inspect_tab.rerender(state, assets.model, "close", 1.0, "anomaly")
    assert out[8]["gate"] == "close" and out[8]["used"] == "rgb"
    assert inspect_tab.recolour(state, "rgb").data[0].type == "scatter3d"
    skipped = inspect_tab.rerender(None, assets.model, "open", 1.0, "anomaly")  # nothing shown yet: no error
    assert skipped == tuple(gr.skip() for _ in range(len(out)))  # every output left as it is


def test_rgb_alone_is_accepted_and_errors_are_one_sentence(assets):
    from app import inspect_tab

    out = inspect_tab.predict(str(assets.rgb), None, assets.model, "control")
    assert out[8]["has_depth"] is False and out[8]["used"] == "rgb"
    # an RGB-D model given no depth never says OK: amber UNSURE, or NG when the RGB head already sees a defect
    verdict = out[8]["summary"]
    assert verdict["verdict"] in ("UNSURE", "NG") and f"verdict-{verdict['verdict'].lower()}" in out[0]
    if verdict["verdict"] == "UNSURE":
        assert "geometric defects cannot be seen" in out[0]
    with pytest.raises(gr.Error, match="upload an RGB image"):
        inspect_tab.predict(None, None, assets.model, "control")


@pytest.mark.skipif(not (REPO / "checkpoints" / "gasket.pt").is_file(), reason="no shipped checkpoints")
def test_a_dent_seen_only_in_depth_is_unsure_without_depth_and_the_sensitivity_rejudges_without_the_network(
    assets, monkeypatch
):
    from app import inspect_tab

    rgb, xyz = REPO / "samples/gasket/dent_00_rgb.png", REPO / "samples/gasket/dent_00_xyz.tiff"
    alone = inspect_tab.predict(str(rgb), None, "gasket", "control")
    assert alone[8]["summary"]["verdict"] == "UNSURE" and "verdict-unsure" in alone[0]  # never a false OK
    with_depth = inspect_tab.predict(str(rgb), str(xyz), "gasket", "control")
    assert with_depth[8]["summary"]["verdict"] == "NG"
    state = with_depth[-1]
    from easynet.predict import Predictor

    def no_network(*args, **kwargs):
        raise AssertionError("the sensitivity slider ran the network")

    monkeypatch.setattr(Predictor, "predict_gates", no_network)
    lenient = inspect_tab.rerender(state, "gasket", "control", 0.25, "anomaly")
    assert lenient[8]["threshold"] == pytest.approx(with_depth[8]["threshold"] * 4)
    assert lenient[8]["score"] == with_depth[8]["score"] and lenient[8]["sensitivity"] == 0.25


def test_compare_gives_three_heat_maps_and_the_choice(assets):
    from app import compare

    *pictures, table, summary = compare.compare_sample(str(assets.rgb), str(assets.depth), assets.model)
    assert len(pictures) == 3 and all(p.shape == pictures[0].shape for p in pictures)
    assert set(summary) == {"close", "open", "control"} and "control chose" in table


def _painted(image_path: Path) -> dict:
    image = cv2.imread(str(image_path))[..., ::-1]
    layer = np.zeros((*image.shape[:2], 4), np.uint8)
    layer[2:10, 3:12] = (255, 0, 0, 255)
    return {"background": image, "layers": [layer], "composite": image}


def test_annotation_saved_in_mvtec_layout_reopened_relabelled_deleted(assets):
    from app import annotate, workspace

    editor = _painted(assets.rgb)
    status, _, _, saved = annotate.save(
        "part_a", "NG", "train", "scratch", str(assets.rgb), str(assets.depth), editor, assets.model
    )
    item = saved["entry"]
    assert item == "part_a:test/scratch/000" and "Saved" in status
    base = assets.workspace / "annotations" / "part_a" / "test" / "scratch"
    gt = cv2.imread(str(base / "gt" / "000.png"), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(gt)) == {0, 255} and (gt == 255).sum() == 8 * 9 and gt[2:10, 3:12].all()
    xyz = tifffile.imread(base / "xyz" / "000.tiff")
    assert xyz.dtype == np.float32 and xyz.shape == (*gt.shape, 3)
    assert np.array_equal(cv2.imread(str(base / "rgb" / "000.png")), cv2.imread(str(assets.rgb)))
    assert saved["files"]["gt"] == "part_a/test/scratch/gt/000.png"  # relative: no server path leaks

    reopened = annotate.reopen(item)
    assert reopened[3] == "NG" and reopened[5] == "scratch"
    assert np.array_equal(annotate.mask_from_editor(reopened[6], cv2.imread(str(assets.rgb))[..., ::-1]), gt > 0)
    _, _, moved, _ = annotate.save("part_a", "OK", "train", "", reopened[1], reopened[2], None, assets.model, item)
    assert moved == "part_a:train/good/000" and not (base / "rgb" / "000.png").exists()
    assert (assets.workspace / "annotations/part_a/train/good/xyz/000.tiff").is_file()
    assert moved in workspace.list_annotations()
    with zipfile.ZipFile(annotate.download()) as zf:
        assert "part_a/train/good/rgb/000.png" in zf.namelist()
    annotate.delete(moved)
    assert moved not in workspace.list_annotations()


@pytest.mark.parametrize("name", ["a/b", "..", "x\\y"])
def test_defect_name_with_a_path_separator_is_refused(assets, name):
    from app import annotate

    with pytest.raises(gr.Error, match="must not contain path separators"):
        annotate.save("part_a", "NG", "train", name, str(assets.rgb), None, _painted(assets.rgb), assets.model)


def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_unsafe_or_wrong_zips_are_refused_with_one_sentence(assets, tmp_path):
    from app import finetune, workspace

    good = {"toy/train/good/rgb/000.png": b"x"}
    with pytest.raises(gr.Error, match=r"'\.\.'"):
        finetune.start("zip", None, None, str(_zip(tmp_path / "a.zip", {**good, "../evil.txt": b"x"})), None, 2)
    cases = [
        (_zip(tmp_path / "b.zip", {"/abs/x.png": b"x"}), "absolute path"),
        (_zip(tmp_path / "c.zip", good, symlink="toy/link"), "symbolic link"),
        (_zip(tmp_path / "d.zip", {}), "holds no files"),
        (_zip(tmp_path / "e.zip", {"readme.txt": b"x"}), "MVTec 3D-AD layout"),
    ]
    for path, message in cases:
        with pytest.raises(InputError, match=message):
            workspace.extract_dataset_zip(path)
    os.environ["EASYNET_MAX_ZIP_BYTES"] = "10"
    try:
        with pytest.raises(InputError, match="more than the limit"):
            workspace.extract_dataset_zip(_zip(tmp_path / "f.zip", {"toy/train/good/rgb/000.png": b"x" * 100}))
    finally:
        del os.environ["EASYNET_MAX_ZIP_BYTES"]


class _Event:
    def __init__(self, step: int, total: int) -> None:
        self.step, self.total, self.loss, self.lr, self.elapsed, self.eta = step, total, {"total": 1 / step}, 0, 0, 0


def test_jobs_queue_cancel_crash_and_restart(assets, tmp_path):
    from app import inspect_tab, jobs

    release = threading.Event()

    def fake_train(job, callback):
        if job.category == "crash":
            raise RuntimeError("the GPU caught fire")
        for step in range(1, job.steps + 1):
            if step == 2:
                release.wait(10)
            if callback(_Event(step, job.steps)) is False:
                return TrainSummary(
                    str(tmp_path / "stopped.pt"), step, stopped=True, alpha=None, validation={}, history=[]
                )
            time.sleep(0.005)
        out = tmp_path / f"{job.id}.pt"
        shutil.copy(assets.workspace / "models" / "toy.pt", out)
        return TrainSummary(
            str(out), job.steps, stopped=False, alpha=0.0, validation={"i_auroc_control": 0.5}, history=[]
        )

    runner = jobs.JobRunner(tmp_path / "jobs", train_fn=fake_train)
    first = runner.submit("toy", "data", steps=50)
    second = runner.submit("toy", "data", steps=3)
    third = runner.submit("toy", "data", steps=3)
    deadline = time.time() + 10
    while runner.get(first.id).state != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert runner.queue() == [second.id, third.id] and runner.get(second.id).state == "queued"
    assert runner.cancel(second.id).state == "cancelled"  # a queued job is dropped at once
    runner.cancel(first.id)  # a running job stops at its next step
    release.set()
    assert runner.wait(first.id).state == "cancelled"
    done = runner.wait(third.id)
    assert done.state == "done" and Path(done.checkpoint).is_file() and done.model == f"toy_ft_{third.id}"
    assert done.metrics == {"i_auroc_control": 0.5} and done.loss[-1]["step"] == 3
    row = runner.store.query("SELECT state, data FROM jobs WHERE id = ?", (third.id,))[0]
    on_disk = json.loads(row["data"])
    assert row["state"] == on_disk["state"] == "done" and on_disk["checkpoint"] == done.checkpoint
    listed = runner.store.query("SELECT name, version, active FROM models WHERE owner = ?", (done.owner,))
    assert [tuple(r) for r in listed] == [(done.model, 1, 1)]  # registered with the job's final state

    crashed = runner.wait(runner.submit("crash", "data", steps=2).id)
    assert crashed.state == "failed" and crashed.error == "RuntimeError: the GPU caught fire"
    assert runner.wait(runner.submit("toy", "data", steps=2).id).state == "done"  # the runner survives
    assert inspect_tab.predict(str(assets.rgb), None, assets.model, "close")[8]["gate"] == "close"  # app too

    running = jobs.Job("0099", "toy", "data", 50, state="running", work=str(tmp_path / "jobs" / "0099.work"))
    runner._save(running)  # as if the server had stopped while it ran
    restarted = jobs.JobRunner(tmp_path / "jobs", train_fn=fake_train)
    assert restarted.get("0099").state == "interrupted" and restarted.get("0099").error == jobs.RESTART_ERROR
    assert not restarted.get("0099").resumable  # no snapshot was saved
    assert restarted.get(crashed.id).state == "failed" and restarted.get(done.id).model == done.model


def test_finetune_status_without_jobs_is_a_sentence(assets, tmp_path, monkeypatch):
    from app import finetune

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "empty"))  # a workspace without any job
    state, text, *_ = finetune.status("")
    assert state == {"state": None} and text == "no fine-tuning job yet; start one first"
    with pytest.raises(gr.Error, match="no fine-tuning job"):
        finetune.status("no-such-job")


def test_category_evaluation_per_gate_and_defect(assets, monkeypatch):
    from app import compare

    monkeypatch.setenv("EASYNET_DATA_ROOTS", os.pathsep.join([str(assets.data_root), str(assets.workspace)]))

    table, bars, report, note = compare.evaluate(
        "folder", None, str(assets.data_root), assets.category, None, assets.model
    )
    assert [row[0] for row in table["value"]] == ["close", "open", "control"]
    assert table["headers"][:4] == ["gate", "I-AUROC", "P-AUROC", "AUPRO"] and "I-AUROC hole" in table["headers"]
    assert {"i_auroc", "p_auroc", "aupro"} <= set(report["gates"]["control"]) and len(bars.data) == 3
    with pytest.raises(gr.Error, match="not a folder"):
        compare.evaluate("folder", None, str(assets.workspace / "nope"), "toy", None, assets.model)


def test_annotation_editor_is_prefilled_from_the_model(assets):
    from app import annotate

    value, note, current = annotate.prefill(str(assets.rgb), str(assets.depth), assets.model)
    image = cv2.imread(str(assets.rgb))
    assert value["composite"].shape == image.shape and value["layers"] == []
    assert "Pre-filled" in note and current is None


def test_server_folders_are_limited_to_the_allowed_roots(tmp_path, monkeypatch):
    from app.workspace import allowed_folder

    inside, outside = tmp_path / "data" / "mvtec", tmp_path / "private"
    inside.mkdir(parents=True)
    outside.mkdir()
    monkeypatch.delenv("SPACE_ID", raising=False)
    for roots in (None, ""):  # no folder by default, on a private server as on a Space
        if roots is None:
            monkeypatch.delenv("EASYNET_DATA_ROOTS", raising=False)
        else:
            monkeypatch.setenv("EASYNET_DATA_ROOTS", roots)
        with pytest.raises(
            InputError,
            match="reading server folders is switched off on this server; the operator "
            "opens data set roots with EASYNET_DATA_ROOTS",
        ):
            allowed_folder(str(outside))
    monkeypatch.setenv("EASYNET_DATA_ROOTS", str(tmp_path / "data"))
    assert allowed_folder(str(inside)) == inside.resolve()
    for bad in (outside, inside / ".." / ".." / "private"):  # '..' cannot climb out of an allowed root
        with pytest.raises(InputError, match="is not allowed on this server"):
            allowed_folder(str(bad))
    monkeypatch.delenv("EASYNET_DATA_ROOTS")
    monkeypatch.setenv("SPACE_ID", "someone/easynet-3d")
    with pytest.raises(InputError, match="switched off on this server"):
        allowed_folder(str(inside))
    with pytest.raises(InputError, match="not a folder on the server"):
        monkeypatch.setenv("EASYNET_DATA_ROOTS", str(tmp_path))
        allowed_folder(str(tmp_path / "missing"))
