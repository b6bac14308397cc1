"""Shipped samples and checkpoints are found from EASYNET_ASSETS, else the working directory, else the source tree."""

import shutil
from pathlib import Path

from app import workspace

SOURCE_TREE = Path(__file__).resolve().parents[1]


def _shipped_tree(root: Path) -> Path:
    (root / "samples" / "toy").mkdir(parents=True)
    for name in ("good_00_rgb.png", "good_00_xyz.tiff"):
        (root / "samples" / "toy" / name).write_bytes(b"x")
    (root / "checkpoints").mkdir()
    return root


def test_the_setting_wins(tmp_path, monkeypatch):
    assets = _shipped_tree(tmp_path / "assets")
    monkeypatch.chdir(_shipped_tree(tmp_path / "cwd"))
    monkeypatch.setenv(workspace.ASSETS_ENV, str(assets))
    assert workspace.assets_root() == assets.resolve()
    assert workspace.sample_pairs() == [
        (str(assets / "samples/toy/good_00_rgb.png"), str(assets / "samples/toy/good_00_xyz.tiff"))
    ]


def test_working_directory_then_source_tree(tmp_path, monkeypatch):
    monkeypatch.delenv(workspace.ASSETS_ENV, raising=False)
    cwd = _shipped_tree(tmp_path / "cwd")
    monkeypatch.chdir(cwd)
    assert workspace.assets_root() == cwd.resolve()
    assert workspace.checkpoints_dir() == cwd.resolve() / "checkpoints"
    monkeypatch.chdir(tmp_path)  # neither folder here: an installed app run from elsewhere in a checkout-less cwd
    assert workspace.assets_root() == SOURCE_TREE
    assert workspace.samples_dir() == SOURCE_TREE / "samples"


def test_models_listed_from_the_assets_checkpoints(tiny_checkpoint, tmp_path, monkeypatch):
    from app import models

    assets = _shipped_tree(tmp_path / "assets")
    shutil.copy(tiny_checkpoint, assets / "checkpoints" / "elsewhere.pt")
    monkeypatch.setenv(workspace.ASSETS_ENV, str(assets))
    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    shipped = [m.name for m in models.list_models() if m.source == "shipped"]
    assert shipped == ["elsewhere"]
