"""Tests for the synthetic RGB-D world generator (tiny images, few files)."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from easynet.data.synthetic import CATEGORIES, generate, generate_sample
from easynet.errors import InputError

SIZE = 64
COUNTS = {"n_train": 2, "n_validation": 1, "n_test_good": 1, "n_test_per_defect": 2}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _twins(category: str, kind: str, seed: int = 3):
    """The same scene rendered with and without its defect."""
    with_defect = generate_sample(category, kind, SIZE, np.random.default_rng(seed))
    without = generate_sample(category, kind, SIZE, np.random.default_rng(seed), defect=False)
    return with_defect, without


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, categories=["tablet", "gasket"], size=SIZE, seed=0, **COUNTS)
    return root


def test_layout_names_and_dtypes(dataset: Path) -> None:
    assert sorted(p.name for p in dataset.iterdir()) == ["gasket", "tablet"]
    cat = dataset / "tablet"
    assert (cat / "README.txt").read_text().lower().count("synthetic") >= 1
    camera = json.loads((cat / "calibration" / "camera_parameters.json").read_text())
    assert {"focal", "cx", "cy"} <= set(camera)
    folders = {"train/good": 2, "validation/good": 1, "test/good": 1}
    folders |= {"test/stain": 2, "test/dent": 2, "test/cut": 2}
    for folder, count in folders.items():
        subdirs = ["rgb", "xyz", "gt"] if folder.startswith("test") else ["rgb", "xyz"]
        assert sorted(p.name for p in (cat / folder).iterdir()) == sorted(subdirs)
        names = [f"{i:03d}" for i in range(count)]
        assert [p.name for p in sorted((cat / folder / "rgb").iterdir())] == [f"{n}.png" for n in names]
        assert [p.name for p in sorted((cat / folder / "xyz").iterdir())] == [f"{n}.tiff" for n in names]
        for name in names:
            rgb = np.asarray(Image.open(cat / folder / "rgb" / f"{name}.png"))
            xyz = tifffile.imread(cat / folder / "xyz" / f"{name}.tiff")
            assert rgb.dtype == np.uint8 and rgb.shape == (SIZE, SIZE, 3)
            assert xyz.dtype == np.float32 and xyz.shape == (SIZE, SIZE, 3)
            missing = (xyz == 0).all(-1)
            assert missing.any() and missing.mean() < 0.2
            assert 0.4 < np.median(xyz[~missing, 2]) < 0.6
            if "gt" in subdirs:
                gt = np.asarray(Image.open(cat / folder / "gt" / f"{name}.png"))
                assert gt.dtype == np.uint8 and gt.shape == (SIZE, SIZE)
                assert set(np.unique(gt)) <= {0, 255}
                assert gt.any() == (folder != "test/good")


def test_deterministic_per_seed_and_category(dataset: Path, tmp_path: Path) -> None:
    generate(tmp_path / "same", categories=["tablet"], size=SIZE, seed=0, **COUNTS)
    assert _files(tmp_path / "same" / "tablet") == _files(dataset / "tablet")
    generate(tmp_path / "other", categories=["tablet"], size=SIZE, seed=1, **COUNTS)
    other = _files(tmp_path / "other" / "tablet")
    assert other["train/good/rgb/000.png"] != _files(dataset / "tablet")["train/good/rgb/000.png"]


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_table_is_tilted_and_gt_inside_object(category: str) -> None:
    sample = generate_sample(category, "cut", SIZE, np.random.default_rng(5))
    valid = (sample.xyz != 0).any(-1)
    background = valid & ~sample.foreground
    x, y, z = (sample.xyz[background][:, i] for i in range(3))
    (slope_x, slope_y, _), *_ = np.linalg.lstsq(np.stack([x, y, np.ones_like(x)], 1), z, rcond=None)
    assert np.hypot(slope_x, slope_y) > 0.005
    assert sample.gt.any() and not (sample.gt & ~sample.foreground).any()
    assert 0.02 < sample.gt.sum() / sample.foreground.sum() < 0.2
    height = np.median(z) - sample.xyz[valid & sample.foreground, 2]
    assert np.median(height) > 0.006


def test_stain_is_colour_only() -> None:
    stained, clean = _twins("bracket", "stain")
    assert np.array_equal(stained.xyz, clean.xyz)
    rgb_change = np.abs(stained.rgb.astype(float) - clean.rgb)[stained.gt].mean()
    assert rgb_change > 20


def test_dent_is_geometry_with_faint_rgb() -> None:
    dented, clean = _twins("bracket", "dent")
    stained, _ = _twins("bracket", "stain")
    inside = dented.gt & (dented.xyz[..., 2] != 0) & (clean.xyz[..., 2] != 0)
    assert np.abs(dented.xyz[..., 2] - clean.xyz[..., 2])[inside].max() > 0.0015
    dent_rgb = np.abs(dented.rgb.astype(float) - clean.rgb)[dented.gt].mean()
    stain_rgb = np.abs(stained.rgb.astype(float) - clean.rgb)[stained.gt].mean()
    assert dent_rgb < 0.3 * stain_rgb
    outside = ~dented.gt & (dented.xyz[..., 2] != 0) & (clean.xyz[..., 2] != 0)
    assert np.array_equal(dented.xyz[outside], clean.xyz[outside])


def test_cut_changes_colour_and_depth() -> None:
    cut, clean = _twins("foam_block", "cut")
    inside = cut.gt & (cut.xyz[..., 2] != 0) & (clean.xyz[..., 2] != 0)
    assert np.median((cut.xyz[..., 2] - clean.xyz[..., 2])[inside]) > 0.005
    assert np.abs(cut.rgb.astype(float) - clean.rgb)[cut.gt].mean() > 15


def test_good_has_empty_gt_and_bad_input_raises() -> None:
    assert not generate_sample("gasket", "good", SIZE, np.random.default_rng(0)).gt.any()
    with pytest.raises(InputError):
        generate_sample("bagel", "good", SIZE, np.random.default_rng(0))
    with pytest.raises(InputError):
        generate_sample("gasket", "scratch", SIZE, np.random.default_rng(0))
