"""Shared set-up of the app tests: a workspace in tmp, a model in it, and one RGB + xyz sample pair.

The shipped checkpoints/ and samples/ are used when present; otherwise the conftest's tiny 2-step checkpoint
(installed as <workspace>/models/toy.pt) and a test image of the conftest's tiny MVTec 3D-AD tree.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
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


def load_demo():
    """Import app.py by path (the `app` name belongs to the app/ package) and return its `demo`."""
    spec = importlib.util.spec_from_file_location("easynet_app_main", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.demo
