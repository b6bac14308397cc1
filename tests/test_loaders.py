"""Tests of the MVTec 3D-AD, Eyecandies and pair-folder loaders and of format detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import make_eyecandies_tree, make_mvtec3d_tree, make_pair_folder
from PIL import Image

from easynet.data import Eyecandies, MVTec3D, PairFolder, Sample, Split, detect_format, open_dataset
from easynet.data.eyecandies import EVAL_LIGHT, light_for
from easynet.errors import InputError

TIRE = Path(__file__).resolve().parents[2] / "shared/data/mvtec3d-tire-rgb"
SIZE = 32


def _check(sample: Sample, depth: bool) -> None:
    assert sample.rgb.shape == (SIZE, SIZE, 3) and sample.rgb.dtype == np.float32
    assert 0.0 <= sample.rgb.min() and sample.rgb.max() <= 1.0
    assert sample.mask.shape == (SIZE, SIZE) and sample.mask.dtype == np.bool_
    if depth:
        assert sample.depth.shape == (SIZE, SIZE) and sample.depth.dtype == np.float32
        assert sample.foreground.dtype == np.bool_ and sample.foreground.any()
        assert sample.depth.max() <= 1.0 and sample.depth[sample.foreground].mean() > 0.3
        assert sample.depth[~sample.foreground].mean() < 0.1
    else:
        assert sample.depth is None and sample.foreground is None


def test_mvtec3d_tilted_table_missing_points(tmp_path):
    root = tmp_path / "mvtec"
    make_mvtec3d_tree(
        root, "toy", size=64, tilt=15.0, missing_fraction=0.05, n_train=2, test={"good": 1, "hole": 2, "cut": 1}
    )
    train = MVTec3D(root, "toy", Split.TRAIN, image_size=SIZE, cache_dir=tmp_path / "cache")
    assert len(train) == 2 and train.defects == ["good"]
    _check(train[0], depth=True)
    assert train[1].name == "train/good/001" and train[1].label == 0 and not train[1].mask.any()
    test = MVTec3D(root, "toy", "test", image_size=SIZE, cache_dir=tmp_path / "cache")
    assert [s.name for s in (test[i] for i in range(len(test)))] == [
        "test/cut/000",
        "test/good/000",
        "test/hole/000",
        "test/hole/001",
    ]
    assert test.defects == ["cut", "good", "hole"] and list(test.labels) == [1, 0, 1, 1]
    hole = test[2]
    assert hole.label == 1 and hole.defect == "hole" and hole.mask.any()  # gt value 254 -> True
    assert not test[1].mask.any() and test[1].label == 0
    rgb_only = MVTec3D(root, "toy", "validation", image_size=SIZE, modality="rgb")
    _check(rgb_only[0], depth=False)
    assert list((root / "toy").rglob("*.npz")) == []  # the cache never writes into the data set


def test_mvtec3d_non_square_rgb_only_and_errors(tmp_path):
    root = tmp_path / "mvtec"
    make_mvtec3d_tree(root, "tall", size=(80, 60), with_xyz=False)  # H=80, W=60 like tire (800 x 600)
    data = MVTec3D(root, "tall", "test", image_size=SIZE)
    assert not data.has_depth
    _check(data[-1], depth=False)
    with pytest.raises(InputError, match="no category 'nope' under .*; found: tall"):
        MVTec3D(root, "nope", "train")
    import shutil

    shutil.rmtree(root / "tall" / "validation")
    with pytest.raises(InputError, match="no 'validation' split"):
        MVTec3D(root, "tall", Split.VALIDATION)


def test_mvtec3d_non_square_with_xyz_and_size_mismatch(tmp_path):
    root = tmp_path / "mvtec"
    make_mvtec3d_tree(root, "tall", size=(80, 60), n_train=1)
    _check(MVTec3D(root, "tall", "train", image_size=SIZE, cache_dir=tmp_path / "c")[0], depth=True)
    rgb = root / "tall" / "train" / "good" / "rgb" / "000.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(rgb)
    with pytest.raises(InputError, match="RGB is 40x40 but depth is 60x80"):
        MVTec3D(root, "tall", "train", image_size=SIZE, cache_dir=tmp_path / "c")[0]


@pytest.mark.skipif(not TIRE.is_dir(), reason="real MVTec 3D-AD tire data (../shared/data) not available")
def test_real_tire_sample_rgb_only():
    data = MVTec3D(TIRE, "tire", "test", image_size=256)  # at 32 px nearest resizing drops tiny defects
    assert len(data) == 25 and data.defects == ["combined", "contamination", "cut", "good", "hole"]
    assert not data.has_depth
    samples = [data[i] for i in range(len(data))]
    for sample in samples:
        assert sample.rgb.shape == (256, 256, 3) and sample.depth is None and sample.foreground is None
        assert sample.label == int(sample.defect != "good") and sample.mask.any() == bool(sample.label)
    assert len(MVTec3D(TIRE, "tire", "train", image_size=SIZE)) == 210
    assert len(MVTec3D(TIRE, "tire", "validation", image_size=SIZE)) == 29
    assert detect_format(TIRE) == "mvtec3d"
    boxed = MVTec3D(TIRE, "tire", "test", image_size=256, resize="letterbox")
    for i in range(len(boxed)):  # letterbox keeps every defect pixel inside the 192 x 256 image rectangle
        sample = boxed[i]
        assert sample.frame.width == 192 and sample.frame.height == 256
        assert not (sample.mask & ~sample.frame.valid).any() and sample.mask.any() == bool(sample.label)


def test_eyecandies_16bit_depth_yaml_and_lights(tmp_path):
    root = tmp_path / "eye"
    make_eyecandies_tree(root, "CandyCane", size=64, n_train=6, n_test_good=1, n_test_bad=2)
    train = Eyecandies(root, "CandyCane", Split.TRAIN, image_size=SIZE, cache_dir=tmp_path / "c")
    sample = train[0]
    _check(sample, depth=True)
    brightness = lambda s: round(float(s.rgb.mean()) * 6)  # noqa: E731 - light k has brightness (k+1)/6
    lights0 = [brightness(train[i]) - 1 for i in range(len(train))]
    assert lights0 == [light_for(0, i) for i in range(len(train))]
    train.set_epoch(1)
    lights1 = [brightness(train[i]) - 1 for i in range(len(train))]
    assert lights1 == [light_for(1, i) for i in range(len(train))] and lights1 != lights0
    test = Eyecandies(root, "CandyCane", Split.TEST, image_size=SIZE, modality="rgb")
    assert [s.label for s in (test[i] for i in range(3))] == [0, 1, 1] and test[0].name == "test_public/0"
    assert all(brightness(test[i]) - 1 == EVAL_LIGHT for i in range(3))
    assert test.defects == ["anomalous", "good"]
    assert test[1].mask.any() and not test[0].mask.any()
    assert brightness(Eyecandies(root, "CandyCane", "test", image_size=SIZE, light=2)[0]) - 1 == 2
    assert len(Eyecandies(root, "CandyCane", Split.VALIDATION, image_size=SIZE)) == 1
    with pytest.raises(InputError, match="no category 'Nope'"):
        Eyecandies(root, "Nope", "train")


@pytest.mark.parametrize("depth_format, subfolders", [("tiff", False), ("png", False), ("npy", True)])
def test_pair_folder(tmp_path, depth_format, subfolders):
    root = make_pair_folder(
        tmp_path / "pairs", size=64, n_good=1, n_bad=1, depth_format=depth_format, subfolders=subfolders
    )
    data = PairFolder(root, image_size=SIZE, modality="rgbd", cache_dir=tmp_path / "c")
    assert len(data) == 2 and [data[i].label for i in range(2)] == [1, 0]  # sorted: bad_1, good_0
    assert data[0].name == "bad_1" and data[0].mask.any() and data.has_depth
    _check(data[1], depth=True)
    assert detect_format(root) == "pairs"
    splits = {split: open_dataset(root, None, split, image_size=SIZE) for split in Split}
    assert [r.name for r in splits[Split.TRAIN].records] == ["good_0"] and len(splits[Split.VALIDATION]) == 0
    assert [r.name for r in splits[Split.TEST].records] == ["bad_1"]  # the labelled defect: test only


def _names(data) -> list[str]:
    return [r.name for r in data.records]


def test_pair_folder_seeded_split_trains_on_good_pairs_only(tmp_path):
    root = make_pair_folder(tmp_path / "pairs", size=16, n_good=10, n_bad=2)
    (root / "dent-defect.png").write_bytes((root / "good_0.png").read_bytes())  # labelled by its name only
    splits = {split: open_dataset(root, None, split, image_size=SIZE) for split in Split}
    train, val, test = (set(_names(splits[s])) for s in (Split.TRAIN, Split.VALIDATION, Split.TEST))
    assert (len(train), len(val), len(test)) == (6, 2, 2 + 3)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {f"good_{i}" for i in range(10)} | {"bad_10", "bad_11", "dent-defect"}
    assert {"bad_10", "bad_11", "dent-defect"} <= test and splits[Split.TEST].labels.sum() == 3
    assert (splits[Split.TRAIN].labels == 0).all() and (splits[Split.VALIDATION].labels == 0).all()
    again = open_dataset(root, None, Split.TRAIN, image_size=SIZE)
    assert _names(again) == _names(splits[Split.TRAIN])  # seeded: the same split every time
    assert len(PairFolder(root, image_size=SIZE)) == 13  # no split: every pair (browsing, prediction)


def test_pair_split_folders_refuse_defects_in_train(tmp_path):
    root = tmp_path / "pairs"
    make_pair_folder(root / "train", size=16, n_good=3, n_bad=0)
    make_pair_folder(root / "test", size=16, n_good=1, n_bad=1)
    assert _names(open_dataset(root, None, Split.TEST, image_size=SIZE)) == ["bad_1", "good_0"]
    assert (
        len(open_dataset(root, None, Split.TRAIN, image_size=SIZE))
        + len(open_dataset(root, None, Split.VALIDATION, image_size=SIZE))
        == 3
    )  # seeded validation from train
    make_pair_folder(root / "val", size=16, n_good=1, n_bad=0)
    assert len(open_dataset(root, None, Split.TRAIN, image_size=SIZE)) == 3  # explicit validation folder
    make_pair_folder(root / "train", size=16, n_good=0, n_bad=1)  # adds train/bad_0.png with a mask
    with pytest.raises(InputError, match=r"train split but holds labelled defects \(bad_0\)"):
        open_dataset(root, None, Split.TRAIN, image_size=SIZE)
    (root / "train" / "bad_0_mask.png").unlink()  # no mask: still a defect by its name
    with pytest.raises(InputError, match="labelled defects"):
        open_dataset(root, None, Split.VALIDATION, image_size=SIZE)


def test_registry_detects_and_opens(tmp_path):
    make_mvtec3d_tree(tmp_path / "m", "toy", size=32, with_xyz=False)
    make_eyecandies_tree(tmp_path / "e", "Lollipop", size=32, n_train=1)
    assert detect_format(tmp_path / "m") == "mvtec3d" and detect_format(tmp_path / "e") == "eyecandies"
    assert isinstance(open_dataset(tmp_path / "m", "toy", "test", image_size=SIZE), MVTec3D)
    assert isinstance(open_dataset(tmp_path / "e", "Lollipop", "train", image_size=SIZE), Eyecandies)
    with pytest.raises(InputError, match="needs a category"):
        open_dataset(tmp_path / "m")
    with pytest.raises(InputError, match="modality"):
        open_dataset(tmp_path / "m", "toy", modality="depth")
