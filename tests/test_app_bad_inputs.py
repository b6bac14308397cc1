"""The bad-input catalogue through the app: handlers give the one-sentence message as a gr.Error, the running
server passes it to gradio_client, and a normal prediction still works afterwards."""

from __future__ import annotations

import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import tifffile
from app_helpers import load_demo
from PIL import Image

from easynet.data.io import read_rgb
from easynet.results import TrainSummary

NO_POINT = "has no valid point (every value is 0, NaN, inf or negative); expected positive distances in metres"
NOT_TIFF = "is not a readable TIFF: it is truncated, corrupt or not a TIFF at all"


def _bad_files(folder: Path, rgb_path: Path) -> dict[str, tuple[Path, Path | None, str]]:
    """case -> (rgb, depth, the exact message)."""
    folder.mkdir(exist_ok=True)
    h, w = read_rgb(rgb_path).shape[:2]
    (folder / "notes.tiff").write_text("these are not pixels")
    (folder / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(folder / "one.png")
    np.save(folder / "nan.npy", np.full((h, w), np.nan, np.float32))
    np.save(folder / "flat.npy", np.full((h, w), 0.5, np.float32))
    np.save(folder / "small.npy", np.linspace(0.4, 0.5, (h // 2) * (w // 2), dtype=np.float32).reshape(h // 2, -1))
    np.save(folder / "int.npy", np.ones((h, w), np.int64))
    tifffile.imwrite(
        folder / "four.tiff", np.ones((h, w, 4), np.float32), photometric="rgb", extrasamples=["unspecified"]
    )
    return {
        "text as rgb tiff": (folder / "notes.tiff", None, f"image file notes.tiff {NOT_TIFF}"),
        "text as depth tiff": (rgb_path, folder / "notes.tiff", f"depth file notes.tiff {NOT_TIFF}"),
        "empty rgb": (
            folder / "empty.png",
            None,
            "image file empty.png is empty (0 bytes); expected a non-empty .png, .jpg, .jpeg, .bmp, .tif, .tiff file",
        ),
        "1x1 rgb": (folder / "one.png", None, "image one.png is 1x1 pixels; each side must be at least 8 pixels"),
        "nan depth": (rgb_path, folder / "nan.npy", f"depth nan.npy {NO_POINT}"),
        "constant depth": (
            rgb_path,
            folder / "flat.npy",
            "depth flat.npy has the same value (0.5 m) everywhere, so "
            "it shows no object; give a real depth map, or no depth for "
            "an RGB-only check",
        ),
        "size mismatch": (
            rgb_path,
            folder / "small.npy",
            f"RGB is {w}x{h} but depth is {w // 2}x{h // 2}; they must be pixel-aligned and of the same size",
        ),
        "int depth": (rgb_path, folder / "int.npy", "depth npy int.npy holds int64 values; expected floats in metres"),
        "4-channel xyz": (
            rgb_path,
            folder / "four.tiff",
            "xyz tiff four.tiff has 4 channels; expected 3 (x, y, z), or HxW without channels for a z map",
        ),
    }


def _gr_message(fn, *args) -> str:
    with pytest.raises(gr.Error) as error:
        fn(*args)
    assert "Traceback" not in error.value.message and "\n" not in error.value.message
    return error.value.message


def test_each_bad_input_gets_its_sentence_and_predict_still_works(assets, tmp_path):
    from app import inspect_tab

    for case, (rgb, depth, message) in _bad_files(tmp_path, assets.rgb).items():
        got = _gr_message(inspect_tab.predict, str(rgb), str(depth) if depth else None, assets.model, "control")
        assert got == message, case
    assert inspect_tab.predict(str(assets.rgb), str(assets.depth), assets.model, "control")[8]["has_depth"]


def test_an_unexpected_crash_becomes_one_sentence(assets, monkeypatch):
    from app import inspect_tab, models, ui

    def broken(name):
        raise RuntimeError("internal detail that users must not see")

    monkeypatch.setattr(models.predictors, "get", broken)
    message = _gr_message(inspect_tab.predict, str(assets.rgb), None, assets.model, "close")
    assert message == ui.INTERNAL_ERROR.format(name="RuntimeError") and "internal detail" not in message
    monkeypatch.undo()
    assert inspect_tab.predict(str(assets.rgb), None, assets.model, "close")[8]["gate"] == "close"


@pytest.mark.parametrize("name", ["a/b", "..", "x\\y"])
def test_category_names_with_path_separators_are_refused(assets, name):
    from app import annotate

    message = _gr_message(annotate.save, name, "OK", "train", "", str(assets.rgb), None, None, assets.model)
    assert message == f"the category name {name!r} must not contain path separators or '..'"
    assert not list(assets.workspace.glob("annotations/*"))  # nothing was written


def test_bad_zips_through_the_fine_tune_handler(assets, tmp_path):
    from app import finetune

    path = tmp_path / "one.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("toy/train/good/rgb/000.png", b"x")
    assert _gr_message(finetune.start, "zip", None, None, str(path), None, 2) == (
        "one.zip holds 1 good training and 0 validation images; fine-tuning needs at least 2 in toy/train/good/rgb "
        "and 1 in toy/validation/good/rgb"
    )
    assert _gr_message(finetune.start, "zip", None, None, None, None, 2) == (
        "upload a zip of one category in the MVTec 3D-AD layout"
    )


class _Payload:
    """Unpickling this would create `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_carrying_code_is_never_listed_or_run(assets, tmp_path):
    import torch

    from app import inspect_tab, models

    marker = tmp_path / "pwned"
    evil = assets.workspace / "models" / "evil.pt"
    torch.save({"format": "easynet-3d-checkpoint", "payload": _Payload(marker)}, evil)
    cut = assets.workspace / "models" / "cut.pt"
    cut.write_bytes((assets.workspace / "models" / "toy.pt").read_bytes()[:1000])
    try:
        names = [name for _, name in models.choices()]
        assert "evil" not in names and "cut" not in names and assets.model in names
        message = _gr_message(inspect_tab.predict, str(assets.rgb), None, "evil", "close")
        assert message.startswith("there is no model called 'evil'; choose one of ")
        assert not marker.exists()
    finally:
        evil.unlink()
        cut.unlink()


# --- background jobs seen through the Fine-tune handlers ---------------------------------------------------------
class _Event:
    def __init__(self, step: int, total: int) -> None:
        self.step, self.total, self.loss, self.lr, self.elapsed, self.eta = step, total, {"total": 1 / step}, 0, 0, 0


def test_crashed_cancelled_and_restarted_jobs_in_the_ui(assets, tmp_path, monkeypatch):
    from app import finetune, inspect_tab, jobs, workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    started = threading.Event()

    def fake_train(job, callback):
        if job.category == "crash":
            raise RuntimeError("out of memory in step 3")
        partial = tmp_path / f"{job.id}.partial.pt"
        partial.write_bytes((assets.workspace / "models" / "toy.pt").read_bytes())
        for step in range(1, job.steps + 1):
            started.set()
            if callback(_Event(step, job.steps)) is False:
                return TrainSummary(str(partial), step, stopped=True, alpha=None, validation={}, history=[])
            time.sleep(0.01)
        return TrainSummary(
            str(partial), job.steps, stopped=False, alpha=0.0, validation={"i_auroc_control": 1.0}, history=[]
        )

    folder = workspace.sub("jobs")
    jobs._runners[folder] = jobs.JobRunner(folder, train_fn=fake_train)
    try:
        runner = jobs.runner()
        crashed = runner.wait(runner.submit("crash", "data", steps=5).id)
        _, text, *_ = finetune.status(crashed.id)
        assert "Error: RuntimeError: out of memory in step 3" in text and "**failed**" in text

        long, queued = runner.submit("toy", "data", steps=10_000), runner.submit("toy", "data", steps=3)
        assert started.wait(10) and runner.queue() == [queued.id]  # the second request waits its turn
        finetune.cancel(long.id)
        assert runner.wait(long.id).state == "cancelled"
        assert not (tmp_path / f"{long.id}.partial.pt").exists()  # the partial checkpoint is removed
        done = runner.wait(queued.id)
        assert done.state == "done" and Path(done.checkpoint).is_file()  # the worker moved on
        assert inspect_tab.predict(str(assets.rgb), None, done.model, "close")[8]["gate"] == "close"

        del jobs._runners[folder]  # "restart": a new runner reads the workspace database
        rows = {row[0]: row[2] for row in finetune.queue_rows()}
        assert rows == {crashed.id: "failed", long.id: "cancelled", queued.id: "done"}
        assert jobs.runner().get(crashed.id).error.startswith("RuntimeError")
    finally:
        jobs._runners.pop(folder, None)


# --- through the running server --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_errors_reach_the_client_and_the_server_keeps_answering(assets, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    os.environ["EASYNET_WORKSPACE"] = str(assets.workspace)
    demo = load_demo()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True)
    client = gradio_client.Client(demo.local_url, verbose=False)
    try:
        cases = _bad_files(tmp_path, assets.rgb)
        for case in ("text as rgb tiff", "size mismatch", "constant depth"):
            rgb, depth, message = cases[case]
            with pytest.raises(AppError) as error:
                client.predict(
                    handle_file(str(rgb)),
                    handle_file(str(depth)) if depth else None,
                    assets.model,
                    "control",
                    api_name="/predict",
                )
            assert str(error.value) == message, case
        with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
            pass
        with pytest.raises(AppError, match=r"^empty\.zip holds no files; expected one category"):
            client.predict(
                "zip", None, None, handle_file(str(tmp_path / "empty.zip")), None, 2, api_name="/finetune_start"
            )
        result = client.predict(
            handle_file(str(assets.rgb)), handle_file(str(assets.depth)), assets.model, "control", api_name="/predict"
        )
        assert next(r for r in result if isinstance(r, dict) and "score" in r)["has_depth"]
    finally:
        client.close()
        demo.close()


def test_limits_are_the_servers_in_the_app_and_errors_stay_on_screen(assets, tmp_path, monkeypatch):
    from app import finetune

    monkeypatch.setenv("EASYNET_MAX_ZIP_BYTES", "10")
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("toy/train/good/rgb/000.png", b"x" * 100)
    with pytest.raises(gr.Error) as error:
        finetune.start("zip", None, None, str(path), None, 2)
    assert error.value.message == (
        "big.zip unpacks to 100 bytes, more than the limit of 10 bytes (this server's "
        "limit; its administrator can raise it with EASYNET_MAX_ZIP_BYTES)"
    )
    assert error.value.duration is None  # the toast stays until closed
