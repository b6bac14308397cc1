"""Shared fixtures: tiny generated data sets and a tiny trained checkpoint (CPU, seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # benchmark code has tests too
os.environ.setdefault("EASYNET_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest-cache-easynet"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory) -> Path:
    """A small MVTec 3D-AD tree (category 'toy', 64x64, tilted table, missing points)."""
    from helpers import make_mvtec3d_tree

    root = tmp_path_factory.mktemp("mvtec")
    make_mvtec3d_tree(root, "toy", size=64, n_train=4, n_val=2, test={"good": 2, "hole": 2})
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_tree, tmp_path_factory) -> Path:
    """A lite checkpoint at 32x32 trained for 2 steps and calibrated on the validation split."""
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
    from easynet.pipeline import train_category

    out = tmp_path_factory.mktemp("ckpt") / "toy.pt"
    train_category(
        tiny_tree,
        "toy",
        out,
        model_cfg=MODEL_PRESETS["lite"].replace(image_size=32),
        train_cfg=TRAIN_PRESETS["official"].replace(steps=2, batch_size=2),
        progress=False,
        device="cpu",
    )
    return out


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_tree, tiny_checkpoint):
    """The app's workspace in a temporary folder (restored afterwards) and the model + sample the tests use."""
    from app_helpers import make_assets

    old = os.environ.get("EASYNET_WORKSPACE")
    yield make_assets(tmp_path_factory.mktemp("workspace"), tiny_tree, tiny_checkpoint)
    if old is None:
        os.environ.pop("EASYNET_WORKSPACE", None)
    else:
        os.environ["EASYNET_WORKSPACE"] = old
