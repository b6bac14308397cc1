"""Shared set-up of the app tests: a workspace in tmp, a model in it, and one RGB + xyz sample pair.

The shipped checkpoints/ and samples/ are used when present; otherwise the conftest's tiny 2-step checkpoint
(installed as <workspace>/models/toy.pt) and a test image of the conftest's tiny MVTec 3D-AD tree.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class AppAssets:
    workspace: Path
    model: str  # registry name to pass to the handlers / API
    rgb: Path
    depth: Path
    data_root: Path  # an MVTec 3D-AD root with category `category`
    category: str


def make_assets(workspace: Path, tiny_tree: Path, tiny_checkpoint: Path) -> AppAssets:
    """Point EASYNET_WORKSPACE at `workspace` and pick the model + sample the tests use."""
    os.environ["EASYNET_WORKSPACE"] = str(workspace)
    (workspace / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_checkpoint, workspace / "models" / "toy.pt")
    shipped = sorted((REPO / "samples").glob("*/*_rgb.png"))
    shipped = [
        p
        for p in shipped
        if p.with_name(p.name.replace("_rgb.png", "_xyz.tiff")).is_file()
        and (REPO / "checkpoints" / f"{p.parent.name}.pt").is_file()
    ]
    if shipped:
        rgb = next((p for p in shipped if p.name.startswith("cut")), shipped[0])
        depth = rgb.with_name(rgb.name.replace("_rgb.png", "_xyz.tiff"))
        model = rgb.parent.name
    else:
        rgb, depth = tiny_tree / "toy/test/hole/rgb/000.png", tiny_tree / "toy/test/hole/xyz/000.tiff"
        model = "toy"
    return AppAssets(workspace, model, rgb, depth, tiny_tree, "toy")


def zip_category(data_root: Path, category: str, out: Path) -> Path:
    """The category folder as a zip in the MVTec 3D-AD layout (what users upload to fine-tune)."""
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted((data_root / category).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(data_root).as_posix())
    return out


def lying_zip(out: Path, entries: int) -> Path:
    """A zip of ``entries`` empty files whose end-of-central-directory record claims one entry: a server that
    trusts the record, or parses the whole directory before counting, is the one this catches."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i in range(entries):
            zf.writestr(f"toy/train/good/rgb/{i:06d}.png", b"")
    data = bytearray(out.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<HH", 1, 1)  # "one entry" on this disk and in all
    out.write_bytes(bytes(data))
    return out


def load_demo():
    """Import app.py by path (the `app` name belongs to the app/ package) and return its `demo`."""
    spec = importlib.util.spec_from_file_location("easynet_app_main", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.demo


class Server:
    """`python app.py` in its own process on a free port (its own workspace and environment): a real server that
    a test can stop and start again (a restart) or kill."""

    def __init__(self, workspace: Path, env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {**os.environ, **(env or {}), "EASYNET_WORKSPACE": str(workspace), "PYTHONPATH": str(REPO)}
        self.env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port)}
        self.cwd, self.proc = cwd, None

    def start(self, timeout: float = 120) -> Server:
        import subprocess
        import time
        import urllib.request

        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")], cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.url + "gradio_api/info", timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the server did not answer in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rss_mib(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20
