"""The built `demo` launched on a free port and driven with gradio_client through every api_name."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from app_helpers import load_demo, make_assets, zip_category

gradio_client = pytest.importorskip("gradio_client")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_tree, tiny_checkpoint):
    old = os.environ.get("EASYNET_WORKSPACE")
    assets = make_assets(tmp_path_factory.mktemp("workspace"), tiny_tree, tiny_checkpoint)
    demo = load_demo()
    port = _free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, assets
    client.close()
    demo.close()
    if old is None:
        os.environ.pop("EASYNET_WORKSPACE", None)
    else:
        os.environ["EASYNET_WORKSPACE"] = old


def _json_output(result: tuple) -> dict:
    return next(r for r in result if isinstance(r, dict) and "score" in r)


@pytest.mark.parametrize("gate", ["close", "open", "control"])
def test_predict_endpoint_in_each_gate(server, gate):
    client, assets = server
    from gradio_client import handle_file

    result = client.predict(
        handle_file(str(assets.rgb)), handle_file(str(assets.depth)), assets.model, gate, api_name="/predict"
    )
    data = _json_output(result)
    assert data["gate"] == gate and data["has_depth"] and {"score", "threshold", "used", "alpha"} <= set(data)
    heat = result[1]
    assert Path(heat).is_file()


def test_rgb_only_to_an_rgbd_model_is_never_ok_over_the_api(server):
    client, assets = server
    from gradio_client import handle_file

    data = _json_output(
        client.predict(handle_file(str(assets.rgb)), None, assets.model, "control", api_name="/predict")
    )
    assert not data["has_depth"] and data["summary"]["verdict"] in ("UNSURE", "NG")
    if data["summary"]["verdict"] == "UNSURE":
        assert "geometric defects cannot be seen" in data["summary"]["reason"]


def test_compare_endpoint(server):
    client, assets = server
    from gradio_client import handle_file

    result = client.predict(
        handle_file(str(assets.rgb)), handle_file(str(assets.depth)), assets.model, api_name="/compare"
    )
    assert "control chose" in result[3] and set(result[4]) == {"close", "open", "control"}


def test_annotate_save_endpoint_writes_the_mvtec_layout(server):
    client, assets = server
    from gradio_client import handle_file

    result = client.predict(
        "api_part",
        "OK",
        "validation",
        "",
        handle_file(str(assets.rgb)),
        handle_file(str(assets.depth)),
        None,
        assets.model,
        api_name="/annotate_save",
    )
    saved = next(r for r in result if isinstance(r, dict) and "entry" in r)
    assert saved["entry"] == "api_part:validation/good/000"
    assert saved["files"]["rgb"] == "api_part/validation/good/rgb/000.png"  # relative, no server path
    # a client is one session: its data set lives in its own folder under <workspace>/sessions/
    [base] = list(assets.workspace.glob("sessions/*/annotations/api_part/validation/good"))
    assert (base / "rgb" / "000.png").is_file()
    xyz = tifffile.imread(base / "xyz" / "000.tiff")
    assert xyz.dtype == np.float32 and xyz.shape[2] == 3


def test_three_api_saves_in_one_session_keep_three_entries(server):
    client, assets = server
    from gradio_client import handle_file

    entries = [
        client.predict(
            "api_three",
            "OK",
            "train",
            "",
            handle_file(str(assets.rgb)),
            None,
            None,
            assets.model,
            api_name="/annotate_save",
        )[-1]["entry"]
        for _ in range(3)
    ]
    assert entries == [f"api_three:train/good/{i:03d}" for i in range(3)]
    folders = list(assets.workspace.glob("sessions/*/annotations/api_three/train/good/rgb"))
    assert len(folders) == 1  # one client = one session's data set
    for i in range(3):
        assert (folders[0] / f"{i:03d}.png").is_file()
    client.predict(entries[1], api_name="/annotate_delete")
    assert sorted(p.name for p in folders[0].iterdir()) == ["000.png", "002.png"]


def test_batch_endpoint_gives_one_row_per_image_and_a_report_zip(server, tmp_path):
    client, assets = server
    import zipfile

    from gradio_client import handle_file

    pairs = [
        (assets.rgb, assets.depth),
        (assets.data_root / "toy/test/good/rgb/000.png", assets.data_root / "toy/test/good/xyz/000.tiff"),
    ]
    archive = tmp_path / "lot.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, (rgb, depth) in enumerate(pairs):
            zf.write(rgb, f"part{i}.png")
            zf.write(depth, f"part{i}.tiff")
    table, gallery, summary, report_zip, report = client.predict(
        [handle_file(str(archive)), handle_file(str(assets.rgb))], assets.model, "control", 1.0, api_name="/batch"
    )
    assert len(table["data"]) == 3 and len(gallery) == 3 and report["done"] == 3
    with zipfile.ZipFile(report_zip) as zf:
        assert len([n for n in zf.namelist() if n.startswith("overlays/")]) == 3
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/predict", "/batch", "/batch_cancel", "/compare", "/annotate_save"} <= names
    assert not any(n.startswith(("/refresh_models", "/finetune_on_load", "/predict_gate")) for n in names)


def _wait(client, job_id: str, states: tuple[str, ...], timeout: float = 300.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(job_id, api_name="/finetune_status")[0]
        if status["state"] in states:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not reach {states}: {status}")


def test_finetune_runs_registers_its_checkpoint_and_cancel_works(server, tmp_path):
    client, assets = server
    from gradio_client import handle_file

    upload = handle_file(str(zip_category(assets.data_root, assets.category, tmp_path / "toy.zip")))
    job_id, status, _ = client.predict("zip", None, None, upload, "toy", 2, api_name="/finetune_start")
    assert status["state"] in ("queued", "running") and status["total"] == 2
    long_id, _, _ = client.predict("zip", None, None, upload, "toy", 5000, api_name="/finetune_start")
    done = _wait(client, job_id, ("done", "failed"))
    assert done["state"] == "done", done["error"]
    assert done["step"] == 2 and done["loss"] is not None
    assert done["checkpoint"] == f"{done['model']}.pt"  # a file name, never a server path
    [saved] = list(assets.workspace.glob(f"sessions/*/models/{done['checkpoint']}"))  # the client's own session

    from app import models, sessions

    assert done["model"] not in [name for _, name in models.choices()]  # not another session's model
    with sessions.as_owner(saved.parents[1].name):
        assert done["model"] in [name for _, name in models.choices()]
    result = client.predict(handle_file(str(assets.rgb)), None, done["model"], "close", api_name="/predict")
    assert _json_output(result)["gate"] == "close"

    _wait(client, long_id, ("running",))
    client.predict(long_id, api_name="/finetune_cancel")
    cancelled = _wait(client, long_id, ("cancelled", "done", "failed"))
    assert cancelled["state"] == "cancelled" and cancelled["step"] < 5000


def test_a_second_session_cannot_see_or_touch_the_first_ones_jobs_and_annotations(server, tmp_path):
    """Client A saved an annotation and ran jobs above; client B (another session) gets none of them."""
    import zipfile

    from gradio_client.exceptions import AppError

    client_a, assets = server
    a_job = client_a.predict("", api_name="/finetune_status")[0]
    assert a_job["id"]  # A sees its own newest job
    client_b = gradio_client.Client(client_a.src, verbose=False)
    try:
        state, _, _, rows, _ = client_b.predict("", api_name="/finetune_status")
        assert state == {"state": None} and not rows["data"]  # B lists no job
        for api_name in ("/finetune_status", "/finetune_cancel"):
            with pytest.raises(AppError, match=f"there is no fine-tuning job '{a_job['id']}' in this session"):
                client_b.predict(a_job["id"], api_name=api_name)
        assert client_a.predict(a_job["id"], api_name="/finetune_status")[0]["id"] == a_job["id"]

        item = "api_part:validation/good/000"
        for api_name in ("/annotate_open", "/annotate_delete"):
            # refused by the handler, or earlier by the dropdown, which lists only B's entries
            with pytest.raises(
                AppError, match="annotation api_part/validation/good/000 does not exist|is not in the list of choices"
            ):
                client_b.predict(item, api_name=api_name)
        [a_rgb] = list(assets.workspace.glob("sessions/*/annotations/api_part/validation/good/rgb/000.png"))
        assert a_rgb.is_file()  # B's delete did not reach A's entry
        download = client_b.predict(api_name="/annotate_download")
        with zipfile.ZipFile(download) as zf:
            assert not [n for n in zf.namelist() if n.startswith("api_part/")]  # B's download holds only B's data
        download = client_a.predict(api_name="/annotate_download")
        with zipfile.ZipFile(download) as zf:
            assert "api_part/validation/good/rgb/000.png" in zf.namelist()
    finally:
        client_b.close()


def test_a_line_inspects_posts_the_human_verdict_and_reads_the_active_versions(server):
    """The API for a line: /predict gives the verdict and a review id, /review_decide records the person's verdict,
    /active_versions says which model and version each category uses."""
    client, assets = server
    from gradio_client import handle_file

    result = client.predict(
        handle_file(str(assets.rgb)), handle_file(str(assets.depth)), assets.model, "control", api_name="/predict"
    )
    data = _json_output(result)
    assert isinstance(data["review_id"], int) and data["summary"]["verdict"] in ("OK", "NG", "UNSURE")
    decided = client.predict(data["review_id"], "NG", "scratch", api_name="/review_decide")
    assert decided["human_verdict"] == "NG" and decided["entry"].endswith(":test/scratch/000")
    versions = client.predict(api_name="/active_versions")
    assert all({"model", "version", "source"} <= set(v) for v in versions.values())
    with pytest.raises(Exception, match="there is no review"):
        gradio_client.Client(client.src, verbose=False).predict(
            data["review_id"], "OK", None, api_name="/review_decide"
        )
