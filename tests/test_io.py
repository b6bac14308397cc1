"""Tests of the file readers: formats, conversions and the one-sentence errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from easynet.data.io import check_same_size, read_depth, read_mask, read_rgb
from easynet.data.types import DepthMap
from easynet.errors import InputError


def _rgb(h: int = 12, w: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff"])
def test_read_rgb_lossless_formats_round_trip(tmp_path, ext):
    rgb = _rgb()
    path = tmp_path / f"a.{ext}"
    if ext == "tiff":
        tifffile.imwrite(path, rgb, photometric="rgb")
    else:
        Image.fromarray(rgb).save(path)
    out = read_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, rgb)  # also proves RGB order (no BGR swap)


def test_read_rgb_jpeg_keeps_channel_order(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 250  # pure red
    Image.fromarray(rgb).save(tmp_path / "a.jpg")
    out = read_rgb(tmp_path / "a.jpg")
    assert out[..., 0].min() > 200 and out[..., 2].max() < 50


def test_read_rgb_grey_rgba_and_16bit(tmp_path):
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = read_rgb(tmp_path / "g.png")
    assert out.shape == (12, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)
    rgba = np.dstack([_rgb(), np.full((12, 16), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgba[..., :3])
    deep = np.full((12, 16), 257 * 100, np.uint16)
    deep[0, 0] = 65535
    Image.fromarray(deep).save(tmp_path / "d.png")
    out = read_rgb(tmp_path / "d.png")
    assert out.dtype == np.uint8 and out[1, 1, 0] == 100 and out[0, 0, 2] == 255


def test_read_rgb_errors(tmp_path, monkeypatch):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_rgb(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello, not an image")
    with pytest.raises(InputError, match="not a readable image"):
        read_rgb(tmp_path / "text.png")
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable image"):
        read_rgb(tmp_path / "cut.png")
    Image.fromarray(_rgb(4, 40)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="at least 8"):
        read_rgb(tmp_path / "small.png")
    monkeypatch.setenv("EASYNET_MAX_PIXELS", "1000")
    with pytest.raises(InputError, match="more than the limit of 1000"):
        read_rgb(tmp_path / "full.png")
    monkeypatch.setenv("EASYNET_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="EASYNET_MAX_PIXELS must be a number of pixels, got 'lots'"):
        read_rgb(tmp_path / "full.png")
    monkeypatch.delenv("EASYNET_MAX_PIXELS")
    assert read_rgb(tmp_path / "full.png").shape == (64, 64, 3)
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="unsupported extension"):
        read_rgb(tmp_path / "a.gif")
    with pytest.raises(InputError, match="does not exist"):
        read_rgb(tmp_path / "missing.png")


def _xyz(h: int = 10, w: int = 12) -> np.ndarray:
    xyz = np.random.default_rng(1).uniform(0.1, 0.2, (h, w, 3)).astype(np.float32)
    xyz[..., 2] += 0.5
    xyz[0, 0] = 0.0  # missing point
    return xyz


def test_read_depth_xyz_tiff_and_nan(tmp_path):
    xyz = _xyz()
    xyz[1, 1, 0] = np.nan
    xyz[2, 2, 2] = np.inf
    tifffile.imwrite(tmp_path / "a.tiff", xyz, photometric="rgb")
    depth = read_depth(tmp_path / "a.tiff")
    assert depth.xyz is not None and depth.xyz.shape == (10, 12, 3) and depth.z.dtype == np.float32
    np.testing.assert_array_equal(depth.z[3:], xyz[3:, :, 2])
    assert not depth.valid[0, 0] and not depth.valid[1, 1] and not depth.valid[2, 2]
    assert depth.valid.sum() == 10 * 12 - 3
    assert (depth.xyz[1, 1] == 0).all() and np.isfinite(depth.xyz).all()


def test_read_depth_2d_float_tiff_and_npy(tmp_path):
    z = _xyz()[..., 2]
    tifffile.imwrite(tmp_path / "z.tif", z)
    depth = read_depth(tmp_path / "z.tif")
    assert depth.xyz is None
    np.testing.assert_array_equal(depth.z, z)
    np.save(tmp_path / "z.npy", z.astype(np.float64))
    np.testing.assert_allclose(read_depth(tmp_path / "z.npy").z, z)
    np.save(tmp_path / "xyz.npy", _xyz())
    assert read_depth(tmp_path / "xyz.npy").xyz.shape == (10, 12, 3)


def test_read_depth_channel_and_dtype_errors(tmp_path):
    tifffile.imwrite(
        tmp_path / "four.tiff", np.ones((10, 12, 4), np.float32), photometric="rgb", extrasamples=["unspecified"]
    )
    with pytest.raises(InputError, match=r"xyz tiff four.tiff has 4 channels; expected 3 \(x, y, z\)"):
        read_depth(tmp_path / "four.tiff")
    tifffile.imwrite(tmp_path / "one.tiff", np.ones((10, 12, 1), np.float32), photometric="minisblack")
    with pytest.raises(InputError, match="has 1 channel; expected 3"):
        read_depth(tmp_path / "one.tiff")
    np.save(tmp_path / "int.npy", np.ones((10, 12), np.int32))
    with pytest.raises(InputError, match="floats"):
        read_depth(tmp_path / "int.npy")
    np.save(tmp_path / "flat.npy", np.ones(120, np.float32))
    with pytest.raises(InputError, match="shape"):
        read_depth(tmp_path / "flat.npy")
    np.save(tmp_path / "zero.npy", np.zeros((10, 12), np.float32))
    with pytest.raises(InputError, match="no valid point"):
        read_depth(tmp_path / "zero.npy")
    np.save(tmp_path / "small.npy", np.ones((4, 12), np.float32))
    with pytest.raises(InputError, match="at least 8"):
        read_depth(tmp_path / "small.npy")
    (tmp_path / "a.exr").write_bytes(b"abc")
    with pytest.raises(InputError, match="unsupported extension"):
        read_depth(tmp_path / "a.exr")


def test_read_depth_corrupt_tiff(tmp_path):
    (tmp_path / "text.tiff").write_text("this is text, not a tiff")
    with pytest.raises(InputError, match="not a readable TIFF"):
        read_depth(tmp_path / "text.tiff")
    tifffile.imwrite(tmp_path / "full.tiff", np.ones((64, 64, 3), np.float32), photometric="rgb")
    data = (tmp_path / "full.tiff").read_bytes()
    (tmp_path / "cut.tiff").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError):
        read_depth(tmp_path / "cut.tiff")


def test_read_depth_png_millimetres_and_yaml(tmp_path):
    mm = np.full((10, 12), 600, np.uint16)
    mm[0, 0], mm[9, 11] = 0, 640  # one missing point, one higher: a constant map would be refused
    Image.fromarray(mm).save(tmp_path / "d.png")
    depth = read_depth(tmp_path / "d.png")
    assert depth.z[5, 5] == pytest.approx(0.6) and not depth.valid[0, 0] and depth.xyz is None
    # Eyecandies: d = png / 65535 * (max - min) + min, yaml found beside the file
    data = tmp_path / "eye"
    data.mkdir()
    png = np.full((10, 12), 65535, np.uint16)
    png[0, :] = 32768
    Image.fromarray(png).save(data / "07_depth.png")
    (data / "07_info_depth.yaml").write_text(yaml.safe_dump({"normalization": {"min": 0.5, "max": 0.9}}))
    depth = read_depth(data / "07_depth.png")
    assert depth.z[5, 5] == pytest.approx(0.9) and depth.z[0, 3] == pytest.approx(0.5 + 0.4 * 32768 / 65535)
    explicit = tmp_path / "other.yaml"
    explicit.write_text(yaml.safe_dump({"normalization": {"min": 1.0, "max": 2.0}}))
    assert read_depth(data / "07_depth.png", explicit).z[5, 5] == pytest.approx(2.0)
    Image.fromarray(np.full((10, 12), 100, np.uint8)).save(tmp_path / "8bit.png")
    with pytest.raises(InputError, match="8-bit"):
        read_depth(tmp_path / "8bit.png")


def test_read_mask_class_values_are_true(tmp_path):
    gt = np.zeros((10, 12), np.uint8)
    gt[1, 1], gt[2, 2], gt[3, 3] = 253, 254, 255
    Image.fromarray(gt).save(tmp_path / "gt.png")
    mask = read_mask(tmp_path / "gt.png")
    assert mask.dtype == np.bool_ and mask.sum() == 3 and mask[1, 1] and mask[2, 2] and mask[3, 3]


def test_check_same_size():
    check_same_size(np.zeros((600, 800, 3), np.uint8), DepthMap(z=np.ones((600, 800), np.float32)))
    with pytest.raises(InputError, match="RGB is 800x600 but depth is 400x400; they must be pixel-aligned"):
        check_same_size(np.zeros((600, 800, 3), np.uint8), DepthMap(z=np.ones((400, 400), np.float32)))
