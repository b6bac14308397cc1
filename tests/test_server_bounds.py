"""A server nobody can fill, block or crash, and whose state outlives a restart: each case of the attack catalogue
(docs/reliability.md) as a test, through the handlers or a real `python app.py` process."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from app_helpers import REPO, Server, lying_zip, zip_category
from PIL import Image

from easynet.errors import InputError

gradio_client = pytest.importorskip("gradio_client")


class _Request:
    def __init__(self, session: str = "bounds") -> None:
        self.session_hash = session


def _zeros_zip(path: Path, png: Path, mib: int) -> Path:
    """One sample PNG and `mib` MiB of zeros: kilobytes on disk, megabytes unpacked."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(png, "part.png")
        zf.writestr("zeros.bin", b"\0" * (mib << 20))
    return path


# --- 1. batch zips --------------------------------------------------------------------------------------------
def test_batch_zips_share_one_budget_and_leave_nothing_unpacked(assets, tmp_path, monkeypatch):
    from app import batch_tab, sessions, workspace

    monkeypatch.setenv("EASYNET_MAX_ZIP_BYTES", str(8 << 20))
    zips = [_zeros_zip(tmp_path / f"z{i}.zip", assets.rgb, 3) for i in range(3)]
    assert all(z.stat().st_size < 100_000 for z in zips)  # kilobytes sent, 3 MiB each unpacked
    with sessions.as_owner("zipper"):
        with pytest.raises(gr.Error) as error:
            list(batch_tab.run([str(z) for z in zips], assets.model, "control", 1.0, _Request()))
        assert "space left for this request's zips" in error.value.message  # the third one does not fit
        assert not list(workspace.folder("zipper").rglob("unpacked"))  # the first two were removed again
        *_, last = batch_tab.run([str(zips[0])], assets.model, "control", 1.0, _Request())
        assert last[4]["done"] == 1 and not list(workspace.folder("zipper").rglob("zeros.bin"))


def test_old_batch_reports_of_a_session_are_removed(assets, tmp_path):
    from app import batch_tab

    folder = tmp_path / "batches"
    for i in range(batch_tab.KEEP_BATCHES + 3):
        (folder / f"2026-{i:03d}").mkdir(parents=True)
        (folder / f"2026-{i:03d}.zip").write_bytes(b"zip")
    batch_tab.keep_recent(folder)
    kept = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert kept == [f"2026-{i:03d}" for i in range(3, batch_tab.KEEP_BATCHES + 3)]
    assert sorted(p.name for p in folder.glob("*.zip")) == [f"{k}.zip" for k in kept]


def test_a_full_session_or_workspace_is_one_sentence(assets, tmp_path, monkeypatch):
    from app import limits

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "big.bin").write_bytes(b"x" * (3 << 20))
    monkeypatch.setenv(limits.SESSION_DISK_ENV, "2")
    with pytest.raises(InputError, match=r"^this session's files take 3 MB .* past the limit of 2 MB per session"):
        limits.check_disk(tmp_path / "s", tmp_path)
    monkeypatch.setenv(limits.SESSION_DISK_ENV, "100")
    monkeypatch.setenv(limits.WORKSPACE_DISK_ENV, "2")
    with pytest.raises(InputError, match=r"^the server's workspace is full"):
        limits.check_disk(tmp_path / "s", tmp_path)


# --- 2. fine-tune slots ---------------------------------------------------------------------------------------
def test_minted_sessions_from_one_address_get_no_more_slots(assets, tmp_path, monkeypatch):
    from app import jobs, sessions, workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))

    def never_ends(job, callback):
        while callback(type("E", (), {"step": 1, "total": 9, "loss": {"total": 1}, "eta": 0, "elapsed": 0})()):
            time.sleep(0.01)
        raise InputError("stopped")

    runner = jobs.JobRunner(workspace.sub("jobs"), train_fn=never_ends)
    try:
        for i in range(2):
            runner.submit("toy", steps=5, owner=f"fresh{i}", client="10.0.0.7")
        with pytest.raises(InputError, match=r"^your address already has 2 fine-tuning jobs queued or running"):
            runner.submit("toy", steps=5, owner="fresh2", client="10.0.0.7")  # a third minted session
        other = runner.submit("toy", steps=5, owner="neighbour", client="10.0.0.8")  # another address may
        job = runner.jobs("fresh0")[0]
        with sessions.as_owner("someone-else"):  # a REST caller with no session follows its job by its token
            assert runner.get(job.id, token=job.token).id == job.id
            with pytest.raises(InputError, match="there is no fine-tuning job"):
                runner.get(job.id, token="0" * 32)
            assert runner.cancel(other.id, token=other.token).id == other.id
    finally:
        for job in list(runner._jobs.values()):
            if job.state in jobs.ACTIVE:
                runner.cancel(job.id, job.owner)


def test_new_sessions_from_one_address_are_rate_limited(assets, tmp_path, monkeypatch):
    from app import sessions

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv(sessions.NEW_SESSIONS_PER_HOUR_ENV, "3")
    monkeypatch.setattr(sessions, "client", lambda: "10.0.0.9")
    tokens = [sessions.adopt(None) for _ in range(3)]
    with pytest.raises(InputError, match=r"^too many new sessions from your address \(3 in the last hour"):
        sessions.adopt(None)
    assert sessions.adopt(tokens[0]) == tokens[0]  # a returning browser is never refused


# --- 3. imports before serving ---------------------------------------------------------------------------------
def test_importing_the_app_loads_what_jobs_and_plots_import_later(tmp_path):
    code = (
        "import sys, runpy; runpy.run_path('app.py', run_name='easynet_app');"
        "print(all(m in sys.modules for m in ('narwhals.stable.v1', 'sklearn.metrics', 'plotly.graph_objects', "
        "'easynet.pipeline')))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "EASYNET_WORKSPACE": str(tmp_path / "ws")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]


# --- 4. a zip whose end record lies ------------------------------------------------------------------------------
def test_a_lying_end_record_costs_neither_time_nor_memory(assets, tmp_path):
    import psutil

    from app import finetune

    path = lying_zip(tmp_path / "liar.zip", 200_000)
    before, start = psutil.Process().memory_info().rss, time.time()
    with pytest.raises(gr.Error, match=r"liar\.zip holds more entries than the limit of 10000"):
        finetune.start("zip", None, None, str(path), None, 2)
    assert time.time() - start < 10 and psutil.Process().memory_info().rss - before < 100 * 2**20


# --- 5. memory per request ---------------------------------------------------------------------------------------
def test_an_image_too_large_for_the_memory_budget_is_refused_from_its_header(assets, tmp_path, monkeypatch):
    from app import inspect_tab, limits

    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 3000), (120, 120, 120)).save(big)  # 9 MP, a few KB on disk
    monkeypatch.setenv(limits.MEMORY_ENV, "200")
    with pytest.raises(gr.Error, match=r"this image needs about 370 MB of server memory, more than the 200 MB"):
        inspect_tab.predict(str(big), None, assets.model, "control")


def test_requests_wait_for_memory_and_are_told_when_the_server_is_busy():
    from app.limits import MemoryBudget

    budget = MemoryBudget(total_mb=100)
    with budget.hold(80):
        with pytest.raises(InputError, match="^the server is busy with other large images"):
            with budget.hold(30, wait_s=0.2):
                pass
        assert budget.used == 80
    with budget.hold(100):
        assert budget.used == 100
    assert budget.used == 0


def test_the_editor_picture_gets_the_pixel_limit_from_its_header(tmp_path, monkeypatch):
    from app import limits

    big = tmp_path / "editor.png"
    Image.new("RGB", (400, 300)).save(big)
    monkeypatch.setenv("EASYNET_MAX_PIXELS", "100000")
    decoded = []
    check = limits.checked_editor(lambda payload: decoded.append(payload) or "decoded")
    payload = type("Editor", (), {"background": type("F", (), {"path": str(big)})(), "layers": [], "composite": None})
    with pytest.raises(gr.Error, match=r"editor's picture editor.png is 400x300 pixels, more than the limit"):
        check(payload())
    assert decoded == []  # refused before Gradio decoded anything
    monkeypatch.setenv("EASYNET_MAX_PIXELS", "1000000")
    assert check(payload()) == "decoded"
    broken = type("F", (), {"path": str(tmp_path / "missing.png")})()
    with pytest.raises(gr.Error, match="the editor's picture could not be read|does not exist"):
        check(type("Editor", (), {"background": broken, "layers": [], "composite": None})())


def test_a_depth_file_of_another_size_is_refused_before_it_is_decoded(assets, tmp_path, monkeypatch):
    import tifffile

    import easynet.inputs as inputs

    depth = tmp_path / "depth.tiff"
    tifffile.imwrite(depth, np.zeros((1500, 1500, 3), np.float32), compression="zlib")  # kilobytes on disk
    monkeypatch.setattr(inputs, "read_depth", lambda *a: pytest.fail("the depth file was decoded"))
    rgb = np.zeros((64, 80, 3), np.uint8)
    with pytest.raises(InputError, match=r"^RGB is 80x64 but depth is 1500x1500; they must be pixel-aligned"):
        inputs.prepare_input(rgb, depth, inputs.ModelConfig(image_size=32))


# --- 6. generic errors -------------------------------------------------------------------------------------------
def test_steps_that_are_not_a_number_are_one_sentence(assets):
    from app import finetune

    for steps in (math.nan, math.inf, "many", 2.5):  # None is the recipe's own length
        with pytest.raises(gr.Error, match=r"steps must be a whole number of training steps"):
            finetune.start("synthetic", "gasket", None, None, None, steps)


def test_a_batch_crash_is_one_sentence_and_a_file_folder_clash_too(assets, tmp_path, monkeypatch):
    from app import batch_tab

    clash = tmp_path / "clash.zip"
    with zipfile.ZipFile(clash, "w") as zf:
        zf.writestr("part", b"a file")
        zf.writestr("part/x.png", b"and a folder")
    with pytest.raises(gr.Error, match=r"clash\.zip holds part/x\.png where a file and a folder share one name"):
        list(batch_tab.run([str(clash)], assets.model, "control", 1.0, _Request()))
    monkeypatch.setattr(batch_tab, "collect", lambda *a, **k: 1 / 0)
    with pytest.raises(gr.Error, match=r"EasyNet-3D failed on this request \(ZeroDivisionError\)"):
        list(batch_tab.run([str(assets.rgb)], assets.model, "control", 1.0, _Request()))


# --- 7. no server paths ------------------------------------------------------------------------------------------
def test_replies_name_files_never_server_paths(assets, tmp_path, monkeypatch):
    from app import compare

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    with pytest.raises(gr.Error) as error:
        compare.evaluate("annotated", None, None, None, "not_there", assets.model)
    assert error.value.message == "your annotated set has no category 'not_there'; annotate images of it first"
    assert str(tmp_path) not in error.value.message


# --- 8. the sweeper ----------------------------------------------------------------------------------------------
def test_the_sweeper_runs_on_a_timer_and_files_vanishing_under_it_are_no_error(assets, tmp_path, monkeypatch):
    from app import sessions, workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv(workspace.SESSION_TTL_ENV, "0")
    with sessions.as_owner("stale"):
        (workspace.own("annotations") / "x.txt").write_text("x")
    real_stat = Path.stat

    def vanishing(self, *a, **k):  # one file disappears while the sweep looks at it
        if self.name == "x.txt":
            raise FileNotFoundError(self)
        return real_stat(self, *a, **k)

    monkeypatch.setattr(Path, "stat", vanishing)
    sweeper = workspace.Sweeper(busy=set, every_s=0.05).start()
    try:
        deadline = time.time() + 10
        while (workspace.root() / "sessions" / "stale").exists() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert not (workspace.root() / "sessions" / "stale").exists()


# --- 9. an annotated fine-tune is checked before it is queued --------------------------------------------------
def test_an_annotated_set_too_small_holds_no_slot(assets, tmp_path, monkeypatch):
    from app import finetune, jobs, sessions

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    with sessions.as_owner("small"), pytest.raises(gr.Error, match=r"the annotated category 'nothing' has no"):
        finetune.start("annotated", None, "nothing", None, None, 2)
    assert not [j for j in jobs.runner().jobs("small")]  # nothing queued


# --- 10. a workspace outside the working folder, and a restart ----------------------------------------------------
@pytest.mark.slow
def test_a_restarted_server_shows_a_returning_session_its_work_and_serves_a_workspace_anywhere(
    tiny_tree, tiny_checkpoint, tmp_path
):
    from gradio_client import handle_file

    home = Path.home() / f".easynet-test-{os.getpid()}"  # outside the working folder and the temp folder
    shutil.rmtree(home, ignore_errors=True)
    (home / "models").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, home / "models" / "toy.pt")
    upload = zip_category(tiny_tree, "toy", tmp_path / "toy.zip")
    rgb, xyz = tiny_tree / "toy/test/hole/rgb/000.png", tiny_tree / "toy/test/hole/xyz/000.tiff"
    server = Server(home).start()
    try:
        client = gradio_client.Client(server.url, verbose=False)
        token = client.predict(None, api_name="/session")  # a new session: the token to keep
        saved = client.predict(
            "restart_part", "OK", "train", "", handle_file(str(rgb)), handle_file(str(xyz)), None, "toy", None,
            api_name="/annotate_save",
        )  # fmt: skip
        entry = saved[-1]["entry"]
        job_id, status, _ = client.predict(
            "zip", None, None, handle_file(str(upload)), "toy", 2, api_name="/finetune_start"
        )
        deadline = time.time() + 240
        while status.get("state") in ("queued", "running") and time.time() < deadline:
            time.sleep(1)
            status = client.predict(job_id, "", api_name="/finetune_status")[0]
        assert status["state"] == "done", status
        batch = client.predict([handle_file(str(rgb))], "toy", "control", 1.0, api_name="/batch")
        assert Path(batch[3]).is_file()  # the report zip was served from a workspace outside cwd and /tmp
        client.close()

        server.stop()
        server.start()  # the same workspace: a restart
        again = gradio_client.Client(server.url, verbose=False)
        assert again.predict(token, api_name="/session") == token  # the returning session
        reopened = again.predict(entry, api_name="/annotate_open")
        assert reopened[0] == "restart_part" and reopened[-1].startswith("Reopened")
        assert again.predict(job_id, "", api_name="/finetune_status")[0]["model"] == status["model"]
        result = again.predict(
            handle_file(str(rgb)), handle_file(str(xyz)), status["model"], "control", api_name="/predict"
        )
        assert any(isinstance(r, dict) and r.get("model") == status["model"] for r in result)
        stranger = gradio_client.Client(server.url, verbose=False)  # another session sees none of it
        with pytest.raises(Exception, match="there is no fine-tuning job"):
            stranger.predict(job_id, "", api_name="/finetune_status")
        again.close()
        stranger.close()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
