"""Sessions: each sees and controls only its own jobs, annotations, uploads and models; quotas; cleanup."""

from __future__ import annotations

import shutil
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from app_helpers import zip_category

from easynet.errors import InputError
from easynet.results import TrainSummary


class _Event:
    def __init__(self, step: int, total: int) -> None:
        self.step, self.total, self.loss, self.lr, self.elapsed, self.eta = step, total, {"total": 1 / step}, 0, 0, 0


@pytest.fixture()
def runner_with(assets, tmp_path, monkeypatch):
    """Install a JobRunner with a fake training function in a fresh workspace; yields a factory."""
    from app import jobs, workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    shutil.copytree(assets.workspace / "models", tmp_path / "ws" / "models")
    installed = []

    def install(train_fn):
        folder = workspace.sub("jobs")
        jobs._runners[folder] = jobs.JobRunner(folder, train_fn=train_fn)
        installed.append(folder)
        return jobs._runners[folder]

    yield install
    for folder in installed:  # stop what a test left running before its workspace goes away
        runner = jobs._runners.pop(folder, None)
        for job in list(runner._jobs.values()) if runner else []:
            if job.state in jobs.ACTIVE:
                runner.cancel(job.id, job.owner)
        for job in list(runner._jobs.values()) if runner else []:
            runner.wait(job.id, timeout=20)


def _finishing_train(toy: Path, release: threading.Event | None = None):
    """A fake training: steps until released (or cancelled), then a copy of the toy checkpoint as its result."""

    def train(job, callback):
        out = Path(job.work) / "checkpoint.pt"
        shutil.copy(toy, out)
        step = 0
        while step < job.steps:
            step += 1
            if callback(_Event(step, job.steps)) is False:
                return TrainSummary(str(out), step, stopped=True, alpha=None, validation={}, history=[])
            if release is not None:
                release.wait(10)
        return TrainSummary(
            str(out), job.steps, stopped=False, alpha=0.0, validation={"i_auroc_control": 0.5}, history=[]
        )

    return train


def test_a_session_cannot_list_open_delete_or_download_another_ones_annotations(assets, tmp_path, monkeypatch):
    from app import annotate, sessions, workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    shutil.copytree(assets.workspace / "models", tmp_path / "ws" / "models")
    with sessions.as_owner("alice"):
        _, _, _, saved = annotate.save(
            "part_s", "OK", "train", "", str(assets.rgb), str(assets.depth), None, assets.model
        )
        item = saved["entry"]  # a new entry (not a relabel): the "current" output stays empty
        assert item == "part_s:train/good/000" and workspace.list_annotations() == [item]
        assert saved["files"]["rgb"] == "part_s/train/good/rgb/000.png"  # relative, never a server path
    with sessions.as_owner("bob"):
        assert workspace.list_annotations() == [] and workspace.annotated_categories() == []
        for handler in (annotate.reopen, annotate.delete):
            with pytest.raises(gr.Error, match="annotation part_s/train/good/000 does not exist"):
                handler(item)
        with zipfile.ZipFile(annotate.download()) as zf:
            assert zf.namelist() == []
    with sessions.as_owner("alice"):
        assert workspace.list_annotations() == [item]  # untouched by bob
        with zipfile.ZipFile(annotate.download()) as zf:
            assert "part_s/train/good/rgb/000.png" in zf.namelist()
    assert workspace.list_annotations() == []  # nor seen by the CLI / operator's own folder


def test_a_session_cannot_list_follow_cancel_or_use_another_ones_jobs(assets, runner_with):
    from app import finetune, models, sessions

    release = threading.Event()
    runner = runner_with(_finishing_train(assets.workspace / "models" / "toy.pt", release))
    with sessions.as_owner("alice"):
        job_id = finetune.start("synthetic", "tablet", None, None, "", 3)[0]
    with sessions.as_owner("bob"):
        state, text, _, rows, _ = finetune.status("")
        assert state == {"state": None} and rows == [] and "no fine-tuning job yet" in text
        for handler in (finetune.status, finetune.cancel):
            with pytest.raises(gr.Error, match=f"there is no fine-tuning job '{job_id}' in this session"):
                handler(job_id)
    release.set()
    done = runner.wait(job_id)
    assert done.state == "done" and done.owner == "alice"  # bob's cancel did not stop it
    with sessions.as_owner("bob"):
        assert done.model not in [name for _, name in models.choices()]
        with pytest.raises(gr.Error, match=f"there is no model called '{done.model}'"):
            finetune.start("synthetic", "tablet", None, None, done.model, 3)
    with sessions.as_owner("alice"):
        assert done.model in [name for _, name in models.choices()]
        assert finetune.status(job_id)[0]["checkpoint"] == f"{done.model}.pt"  # a file name, no server path
        assert [row[0] for row in finetune.queue_rows()] == [job_id]


def test_queue_quotas_and_the_steps_limit_on_a_space(assets, runner_with, tmp_path, monkeypatch):
    from app import jobs, sessions

    release = threading.Event()
    runner = runner_with(_finishing_train(assets.workspace / "models" / "toy.pt", release))
    try:
        with sessions.as_owner("alice"):
            runner.submit("toy", steps=5)
            runner.submit("toy", steps=5)
            leftover = tmp_path / "extracted"
            leftover.mkdir()
            with pytest.raises(
                InputError,
                match="^this session already has 2 fine-tuning jobs queued or running, the "
                "limit; wait for one to finish or cancel one$",
            ):
                runner.submit("toy", steps=5, cleanup=[leftover])
            assert not leftover.exists()  # a refused job leaves no extracted upload behind
        monkeypatch.setenv("EASYNET_MAX_JOBS", "3")
        with sessions.as_owner("bob"):
            runner.submit("toy", steps=5)
        with sessions.as_owner("carol"):
            with pytest.raises(
                InputError,
                match="^the server already has 3 fine-tuning jobs queued or running, the "
                "limit; try again when one has finished$",
            ):
                runner.submit("toy", steps=5)
            monkeypatch.setenv("SPACE_ID", "someone/easynet-3d")
            assert jobs.max_steps() == jobs.SPACE_MAX_STEPS
            with pytest.raises(InputError, match="^steps must be between 1 and 2000 on this server, got 5000$"):
                runner.submit("toy", steps=5000)
    finally:
        release.set()


def test_no_upload_or_work_folder_remains_after_a_finished_failed_or_cancelled_job(assets, runner_with, tmp_path):
    from app import finetune, sessions, workspace

    release = threading.Event()
    finishing = _finishing_train(assets.workspace / "models" / "toy.pt", release)
    plan: list[str] = []

    def train(job, callback):
        if plan.pop(0) == "fail":
            (Path(job.work) / "checkpoint.pt").write_bytes(b"partial")
            raise RuntimeError("the data set could not be read")
        return finishing(job, callback)

    runner = runner_with(train)
    upload = zip_category(assets.data_root, assets.category, tmp_path / "toy.zip")

    def uploads() -> list[Path]:
        return [p for p in workspace.root().rglob("uploads/*")] + list(workspace.root().glob("jobs/*.work"))

    with sessions.as_owner("alice"):
        ids = {}
        for outcome in ("done", "fail"):
            plan.append(outcome)
            release.set()
            ids[outcome] = finetune.start("zip", None, None, str(upload), "", 3)[0]
            assert runner.wait(ids[outcome]).state == {"done": "done", "fail": "failed"}[outcome]
            assert uploads() == [], outcome
        release.clear()
        plan += ["cancel", "never runs"]
        running = finetune.start("zip", None, None, str(upload), "", 100)[0]
        queued = finetune.start("zip", None, None, str(upload), "", 3)[0]
        assert len([p for p in workspace.root().rglob("uploads/*")]) == 2  # both extracted while they wait
        deadline = time.time() + 10
        while runner._jobs[running].state != "running" and time.time() < deadline:
            time.sleep(0.01)
        finetune.cancel(queued)  # a queued job is dropped at once, its upload with it
        assert runner._jobs[queued].state == "cancelled"
        finetune.cancel(running)
        release.set()
        assert runner.wait(running).state == "cancelled"
    assert uploads() == []
    assert np.all([runner._jobs[i].cleanup for i in ids.values()])  # each job knew its upload folder


def test_old_idle_session_folders_are_swept_but_busy_ones_kept(tmp_path, monkeypatch):
    from app import sessions, workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    for owner in ("old", "busy", "fresh", sessions.TEAM):
        with sessions.as_owner(owner):
            (workspace.own("annotations") / "x.txt").write_text("x")
    now = time.time() + 1000
    removed = workspace.sweep_sessions({"busy"}, max_age_s=500, now=now)
    assert removed == ["fresh", "old"]  # both untouched for 1000 s > 500 s
    assert (workspace.root() / "sessions" / "busy").is_dir() and (workspace.root() / "sessions" / "team").is_dir()


def test_the_browser_token_keeps_a_session_across_reloads(monkeypatch):
    from gradio.context import LocalContext

    from app import sessions

    class Request:
        username = None

        def __init__(self, session_hash: str) -> None:
            self.session_hash = session_hash

    def as_request(session_hash: str):
        LocalContext.request.set(Request(session_hash))

    as_request("page-1")
    first = sessions.owner()
    token = sessions.adopt(None)  # a first visit gets a new token
    assert len(token) == 32 and sessions.owner() != first
    adopted = sessions.owner()
    as_request("page-2")  # a reload: a new Gradio session, the same browser token
    assert sessions.owner() != adopted
    assert sessions.adopt(token) == token and sessions.owner() == adopted
    as_request("page-3")
    assert sessions.adopt("../../etc") != "../../etc"  # a forged value is replaced by a fresh token
    assert sessions.owner() not in (adopted, first)
    LocalContext.request.set(None)
    assert sessions.owner() == sessions.LOCAL


def test_the_inspect_state_keeps_paths_and_small_pictures_only(assets):
    from app import inspect_tab, ui

    out = inspect_tab.predict(str(assets.rgb), str(assets.depth), assets.model, "control")
    state = out[-1]
    assert state["rgb"] == str(assets.rgb) and state["depth"] == str(assets.depth)
    for key in ("image", "xyz", "foreground", "heat"):
        assert max(state[key].shape[:2]) <= ui.STATE_SIDE, key  # never the full-resolution arrays
    assert inspect_tab.recolour(state, "rgb") is not None  # the 3D view is redrawn from the small pictures
    assert inspect_tab.build.__module__ == "app.inspect_tab" and ui.STATE_TTL_S > 0


def test_compact_state_thins_a_large_image_to_the_state_side():
    from app import ui

    image = np.zeros((6000, 4000, 3), np.uint8)
    state = ui.compact_state(
        "a.png",
        None,
        image,
        np.zeros((6000, 4000, 3), np.float32),
        np.ones((6000, 4000), bool),
        np.zeros((128, 128), np.float32),
    )
    assert state["image"].shape == (250, 167, 3) and state["xyz"].shape == (250, 167, 3)
    assert state["foreground"].shape == (250, 167) and state["depth"] is None


def test_login_switched_on_by_the_operator_gives_one_team_workspace(monkeypatch):
    from gradio.context import LocalContext

    from app import sessions

    class Request:
        session_hash, username = "page-9", "ada"

    assert sessions.auth_pairs() is None or "EASYNET_AUTH" in __import__("os").environ
    monkeypatch.setenv("EASYNET_AUTH", "ada:secret, bob:hunter2")
    assert sessions.auth_pairs() == [("ada", "secret"), ("bob", "hunter2")]
    monkeypatch.setenv("EASYNET_AUTH", "no-password")
    with pytest.raises(SystemExit, match="EASYNET_AUTH must be 'user:password' pairs"):
        sessions.auth_pairs()
    LocalContext.request.set(Request())
    try:
        assert sessions.owner() == sessions.TEAM
    finally:
        LocalContext.request.set(None)


def test_a_fine_tune_worse_than_its_parent_is_marked_and_never_the_default(assets, runner_with):
    """The job compares the fine-tuned model with the one it started from on the same validation data: a worse one
    is listed, marked in every picker and never chosen as its category's default; a better one becomes it."""
    from app import finetune, models, sessions

    toy = assets.workspace / "models" / "toy.pt"

    def train(job, callback):
        out = Path(job.work) / "checkpoint.pt"
        shutil.copy(toy, out)
        callback(_Event(1, job.steps))
        fine_tuned = 0.70 if job.steps == 3 else 0.95  # 3 steps: made worse on purpose
        return TrainSummary(
            str(out), job.steps, False, 0.0, {"i_auroc_control": fine_tuned}, [], {"i_auroc_control": 0.90}
        )

    runner = runner_with(train)
    with sessions.as_owner("dora"):
        better = runner.wait(finetune.start("synthetic", "tablet", None, None, "toy", 4)[0])
        worse = runner.wait(finetune.start("synthetic", "tablet", None, None, "toy", 3)[0])
        assert better.worse is False and worse.worse is True
        listed = {m.name: m for m in models.list_models()}
        assert listed[worse.model].worse and "WORSE than its parent" in listed[worse.model].label
        assert "parent toy 0.900" in listed[worse.model].label and not listed[better.model].worse
        assert models.for_category("toy") == better.model  # the worse one is never the default
        status, text, *_ = finetune.status(worse.id)
        assert status["worse_than_parent"] and status["parent_validation"] == 0.90
        assert "worse than the model it started from" in text
    with sessions.as_owner("erin"):
        assert models.for_category("toy") == "toy"  # another session keeps the shared model


def test_a_job_without_a_length_runs_the_recipe_it_starts(assets, runner_with, tmp_path, monkeypatch):
    """Steps left empty: 200 from a model; from scratch the recipe's own length, `lite` on RGB-D data and `base` on
    photos without depth (the length its published figures were measured at), capped by the server's limit."""
    from app import finetune, sessions
    from easynet.config import TRAIN_PRESETS
    from easynet.pipeline import FINETUNE_STEPS

    runner = runner_with(_finishing_train(assets.workspace / "models" / "toy.pt", threading.Event()))
    rgbd = zip_category(assets.data_root, assets.category, tmp_path / "rgbd.zip")
    rgb_only = tmp_path / "photos.zip"
    with zipfile.ZipFile(rgbd) as src, zipfile.ZipFile(rgb_only, "w") as dst:
        for name in src.namelist():
            if "/xyz/" not in name:
                dst.writestr(name, src.read(name))
    with sessions.as_owner("carol"):
        cases = {
            "from a model": (("zip", None, None, str(rgbd), "toy"), FINETUNE_STEPS),
            "synthetic from scratch": (("synthetic", "tablet", None, None, ""), TRAIN_PRESETS["lite"].steps),
            "RGB-D zip from scratch": (("zip", None, None, str(rgbd), ""), TRAIN_PRESETS["lite"].steps),
            "photos from scratch": (("zip", None, None, str(rgb_only), ""), TRAIN_PRESETS["base"].steps),
        }
        for case, (args, expected) in cases.items():
            job_id = finetune.start(*args, None)[0]
            assert runner._jobs[job_id].steps == expected, case
            finetune.cancel(job_id)
        monkeypatch.setenv("EASYNET_MAX_STEPS", "2000")  # a server that allows less than the recipe
        job_id = finetune.start("zip", None, None, str(rgb_only), "", 0)[0]  # the box's 0
        assert runner._jobs[job_id].steps == 2000
        finetune.cancel(job_id)
    assert TRAIN_PRESETS["lite"].steps != TRAIN_PRESETS["base"].steps != FINETUNE_STEPS  # the cases tell them apart
