"""The bad-input catalogue at library level: each case gets its exact one-sentence message (docs/reliability.md)."""

from __future__ import annotations

import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from easynet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from easynet.config import MODEL_PRESETS
from easynet.data.io import read_depth, read_rgb
from easynet.errors import CheckpointError, InputError
from easynet.inputs import prepare_input
from easynet.model import EasyNet

CFG = MODEL_PRESETS["lite"].replace(image_size=32)
LAYOUT = "CATEGORY/train/good/rgb/NNN.png + xyz/NNN.tiff, CATEGORY/validation/good/..."
NO_POINT = "has no valid point (every value is 0, NaN, inf or negative); expected positive distances in metres"


def _message(error: pytest.ExceptionInfo) -> str:
    return str(error.value)


def _refused(fn, *args, kind: type[Exception] = InputError) -> str:
    with pytest.raises(kind) as error:
        fn(*args)
    message = _message(error)
    assert "\n" not in message and "Traceback" not in message
    return message


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _xyz(h: int = 24, w: int = 32) -> np.ndarray:
    """A tilted table with a box on it, in metres."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    z = 0.5 + 0.001 * xs
    z[8:16, 10:20] -= 0.02
    return np.dstack([(xs - w / 2) * 0.001, (ys - h / 2) * 0.001, z]).astype(np.float32)


def _huge_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width x height written by hand (12 kB on disk, no big array in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * ((1 + (width + 7) // 8) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


# --- RGB and depth of different sizes ------------------------------------------------------------------------
@pytest.mark.parametrize("depth_shape", [(24, 24), (32, 24)])
def test_rgb_and_depth_of_different_size_or_aspect(tmp_path, depth_shape):
    rgb = _png(tmp_path / "rgb.png", np.zeros((24, 32, 3), np.uint8))
    h, w = depth_shape
    np.save(tmp_path / "depth.npy", _xyz(h, w))
    message = _refused(prepare_input, rgb, tmp_path / "depth.npy", CFG)
    assert message == f"RGB is 32x24 but depth is {w}x{h}; they must be pixel-aligned and of the same size"


# --- depth values -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 0.0, -1.0])
def test_depth_without_a_valid_point(tmp_path, value):
    np.save(tmp_path / "d.npy", np.full((24, 32), value, np.float32))
    assert _refused(read_depth, tmp_path / "d.npy") == f"depth d.npy {NO_POINT}"


def test_depth_array_without_a_valid_point_is_refused_like_a_file():
    rgb = np.zeros((24, 32, 3), np.uint8)
    assert _refused(prepare_input, rgb, np.full((24, 32), np.nan), CFG) == f"depth array {NO_POINT}"


def test_constant_depth_is_refused(tmp_path):
    np.save(tmp_path / "flat.npy", np.full((24, 32), 0.5, np.float32))
    assert _refused(read_depth, tmp_path / "flat.npy") == (
        "depth flat.npy has the same value (0.5 m) everywhere, so it shows no object; give a real depth map, "
        "or no depth for an RGB-only check"
    )


def test_partly_missing_depth_is_accepted_and_nan_becomes_missing(tmp_path):
    xyz = _xyz()
    xyz[:3, :5] = np.nan
    xyz[3, :5, 2] = np.inf
    np.save(tmp_path / "holes.npy", xyz)
    depth = read_depth(tmp_path / "holes.npy")
    assert depth.z[:4, :5].max() == 0 and np.isfinite(depth.xyz).all() and depth.valid.sum() == 24 * 32 - 20


# --- image sizes -------------------------------------------------------------------------------------------
def test_one_pixel_image_is_refused(tmp_path):
    path = _png(tmp_path / "one.png", np.zeros((1, 1, 3), np.uint8))
    assert _refused(read_rgb, path) == "image one.png is 1x1 pixels; each side must be at least 8 pixels"


def test_10000_square_image_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.delenv("EASYNET_MAX_PIXELS", raising=False)
    path = _huge_png(tmp_path / "big.png", 10_000, 10_000)
    assert _refused(read_rgb, path) == (
        "image big.png is 10000x10000 pixels, more than the limit of 40000000 pixels; downscale it or set "
        "EASYNET_MAX_PIXELS to raise the limit"
    )


def test_large_image_within_the_limit_is_downscaled_to_the_model_size(tmp_path, monkeypatch):
    monkeypatch.setenv("EASYNET_MAX_PIXELS", "100000")
    path = _png(tmp_path / "wide.png", np.full((200, 400, 3), 7, np.uint8))
    inputs = prepare_input(path, None, CFG)
    assert inputs.rgb.shape == (32, 32, 3) and inputs.original_size == (200, 400)


# --- pixel formats accepted and converted ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((16, 16), 9, np.uint8), 9),  # greyscale
        (np.dstack([np.full((16, 16, 3), 9, np.uint8), np.zeros((16, 16), np.uint8)]), 9),  # RGBA: alpha dropped
        (np.full((16, 16), 65535, np.uint16), 255),  # 16-bit greyscale: scaled, not clipped
        (np.full((16, 16), 257 * 100, np.uint16), 100),
    ],
)
def test_greyscale_rgba_and_16_bit_pngs_are_converted(tmp_path, array, expected):
    rgb = read_rgb(_png(tmp_path / "x.png", array))
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8 and (rgb == expected).all()


def test_16_bit_rgb_tiff_is_converted(tmp_path):
    tifffile.imwrite(tmp_path / "x.tiff", np.full((16, 16, 3), 65535, np.uint16), photometric="rgb")
    assert (read_rgb(tmp_path / "x.tiff") == 255).all()


# --- broken files ---------------------------------------------------------------------------------------------
def test_text_file_renamed_tiff(tmp_path):
    path = tmp_path / "notes.tiff"
    path.write_text("these are not pixels")
    tail = "is not a readable TIFF: it is truncated, corrupt or not a TIFF at all"
    assert _refused(read_rgb, path) == f"image file notes.tiff {tail}"
    assert _refused(read_depth, path) == f"depth file notes.tiff {tail}"


def test_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels")
    assert (
        _refused(read_rgb, path) == "image file notes.png is not a readable image: it is truncated, corrupt or "
        "not a PNG at all"
    )


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "full.tiff", _xyz(), photometric="rgb")
    data = (tmp_path / "full.tiff").read_bytes()
    (tmp_path / "cut.tiff").write_bytes(data[: len(data) // 2])
    assert _refused(read_depth, tmp_path / "cut.tiff") == (
        "depth file cut.tiff is not a readable TIFF: it is truncated, corrupt or not a TIFF at all"
    )


@pytest.mark.parametrize(("channels", "word"), [(1, "channel"), (4, "channels")])
def test_xyz_with_1_or_4_channels(tmp_path, channels, word):
    array = np.ones((24, 32, channels), np.float32)
    if channels == 4:
        tifffile.imwrite(tmp_path / "x.tiff", array, photometric="rgb", extrasamples=["unspecified"])
    else:
        tifffile.imwrite(tmp_path / "x.tiff", array, photometric="minisblack")
    np.save(tmp_path / "x.npy", array)
    tail = f"has {channels} {word}; expected 3 (x, y, z), or HxW without channels for a z map"
    assert _refused(read_depth, tmp_path / "x.tiff") == f"xyz tiff x.tiff {tail}"
    assert _refused(read_depth, tmp_path / "x.npy") == f"xyz npy x.npy {tail}"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((24, 32), np.int32), "depth npy d.npy holds int32 values; expected floats in metres"),
        (np.ones((24, 32, 3), np.uint8), "depth npy d.npy holds uint8 values; expected floats in metres"),
        (np.ones(32, np.float32), "depth npy d.npy has shape (32,); expected HxW (z) or HxWx3 (x, y, z)"),
        (
            np.ones((24, 32, 3, 1), np.float32),
            "depth npy d.npy has shape (24, 32, 3, 1); expected HxW (z) or HxWx3 (x, y, z)",
        ),
    ],
)
def test_depth_npy_of_the_wrong_dtype_or_rank(tmp_path, array, message):
    np.save(tmp_path / "d.npy", array)
    assert _refused(read_depth, tmp_path / "d.npy") == message


def test_depth_npy_holding_python_objects_is_not_unpickled(tmp_path):
    np.save(tmp_path / "d.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert _refused(read_depth, tmp_path / "d.npy") == (
        "depth file d.npy is not a readable .npy array: it is truncated, corrupt or holds Python objects (never loaded)"
    )


def test_empty_upload(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    (tmp_path / "e.tiff").write_bytes(b"")
    assert _refused(read_rgb, tmp_path / "e.png") == (
        "image file e.png is empty (0 bytes); expected a non-empty .png, .jpg, .jpeg, .bmp, .tif, .tiff file"
    )
    assert _refused(read_depth, tmp_path / "e.tiff") == (
        "depth file e.tiff is empty (0 bytes); expected a non-empty .tif, .tiff, .png, .npy file"
    )


# --- fine-tuning zips ------------------------------------------------------------------------------------------
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


GOOD_TRAIN = {f"toy/train/good/rgb/00{i}.png": b"x" for i in range(2)}
GOOD_VAL = {"toy/validation/good/rgb/000.png": b"x"}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({}, f"z.zip holds no files; expected one category ({LAYOUT})"),
        (
            {"readme.txt": b"x"},
            f"z.zip is not in the MVTec 3D-AD layout: expected exactly one CATEGORY folder ({LAYOUT})",
        ),
        (
            {"a/train/good/rgb/000.png": b"x", "b/train/good/rgb/000.png": b"x"},
            f"z.zip is not in the MVTec 3D-AD layout: expected exactly one CATEGORY folder ({LAYOUT})",
        ),
        (
            {"toy/train/good/rgb/000.png": b"x"},
            "z.zip holds 1 good training and 0 validation images; fine-tuning needs at least 2 in "
            "toy/train/good/rgb and 1 in toy/validation/good/rgb",
        ),
        (
            {"/etc/toy/train/good/rgb/000.png": b"x"},
            "z.zip holds an absolute path (/etc/toy/train/good/rgb/000.png); zips must use relative paths",
        ),
        (
            {**GOOD_TRAIN, **GOOD_VAL, "toy/../../evil.txt": b"x"},
            "z.zip holds a path with '..' (toy/../../evil.txt), which could write outside its folder; zips must use "
            "plain relative paths",
        ),
        (
            {"my part/train/good/rgb/000.png": b"x", "my part/train/good/rgb/001.png": b"x"},
            "the category name 'my part' may only use letters, digits, '_', '-' and '.', starting with a letter or "
            "digit",
        ),
    ],
)
def test_bad_fine_tuning_zips(tmp_path, monkeypatch, members, message):
    from app import workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    assert _refused(workspace.extract_dataset_zip, _zip(tmp_path / "z.zip", members)) == message
    assert not list((tmp_path / "ws").glob("uploads/*"))  # nothing was written


def test_zip_bomb_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    from app import workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("EASYNET_MAX_ZIP_BYTES", "1000000")
    bomb = _zip(tmp_path / "bomb.zip", {**GOOD_TRAIN, **GOOD_VAL, "toy/train/good/rgb/pad.bin": b"\0" * 3_000_000})
    assert bomb.stat().st_size < 20_000  # highly compressible: small on disk, 3 MB unpacked
    assert _refused(workspace.extract_dataset_zip, bomb) == (
        "bomb.zip unpacks to 3000003 bytes, more than the limit of 1000000 bytes (set EASYNET_MAX_ZIP_BYTES to "
        "raise it)"
    )


def test_zip_of_30000_entries_is_refused_from_its_directory_record(tmp_path, monkeypatch):
    from app import workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    members = {**GOOD_TRAIN, **GOOD_VAL, **{f"toy/train/good/rgb/{i:05d}.png": b"" for i in range(30_000)}}
    with zipfile.ZipFile(tmp_path / "many.zip", "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert _refused(workspace.extract_dataset_zip, tmp_path / "many.zip") == (
        "many.zip holds more entries than the limit of 10000 (set EASYNET_MAX_ZIP_ENTRIES to raise it); "
        "zip one category of images"
    )
    assert not list((tmp_path / "ws").rglob("uploads/*"))  # nothing was extracted


def test_not_a_zip(tmp_path, monkeypatch):
    from app import workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    (tmp_path / "data.zip").write_text("not a zip")
    assert _refused(workspace.extract_dataset_zip, tmp_path / "data.zip") == (
        f"data.zip is not a zip file; expected a .zip of one category ({LAYOUT})"
    )


def test_good_zip_is_extracted(tmp_path, monkeypatch):
    from app import workspace

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    root, category = workspace.extract_dataset_zip(_zip(tmp_path / "ok.zip", {**GOOD_TRAIN, **GOOD_VAL}))
    assert category == "toy" and (root / "toy/validation/good/rgb/000.png").is_file()


# --- names -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a/b", "..", "x\\y", "../etc"])
def test_category_and_defect_names_with_path_separators(name):
    from app import workspace

    for what in ("category", "defect type"):
        assert _refused(workspace.safe_name, name, what) == (
            f"the {what} name {name!r} must not contain path separators or '..'"
        )


# --- checkpoints -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(Checkpoint(CFG, EasyNet(CFG).state_dict()), tmp_path_factory.mktemp("ck") / "good.pt")


def test_truncated_checkpoint(tmp_path, good_checkpoint):
    data = good_checkpoint.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert _refused(load_checkpoint, tmp_path / "cut.pt", kind=CheckpointError) == (
        "cut.pt cannot be read as a checkpoint: it is truncated or corrupt; expected a complete .pt file written "
        "by EasyNet-3D"
    )


def test_checkpoint_for_another_preset(tmp_path):
    wider = EasyNet(CFG.replace(base_width=16)).state_dict()
    path = save_checkpoint(Checkpoint(CFG, wider), tmp_path / "other.pt")  # header: lite; weights: wider
    message = _refused(lambda: load_checkpoint(path).build_model(), kind=CheckpointError)
    expected = EasyNet(CFG).state_dict()
    mismatches = sum(wider[k].shape != v.shape for k, v in expected.items())  # counted here, not pinned
    assert mismatches > 100
    assert message == (
        f"the weights do not fit the architecture named in the checkpoint ({mismatches} shape mismatches (e.g. "
        "rgb.encoder.block1.0.weight: (16, 3, 3, 3) vs (8, 3, 3, 3))); the file was saved for another preset or edited"
    )


class _Payload:
    """Unpickling this would create `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    if how == "torch":
        torch.save({"format": "easynet-3d-checkpoint", "payload": _Payload(marker)}, evil)
    else:
        evil.write_bytes(pickle.dumps({"format": "easynet-3d-checkpoint", "payload": _Payload(marker)}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch notes the pickle protocol of the raw file
        message = _refused(load_checkpoint, evil, kind=CheckpointError)
    assert message == (
        "evil.pt was refused: it holds Python objects other than tensors and plain data (possibly "
        "code), which EasyNet-3D never loads"
    )
    assert not marker.exists()


def test_checkpoint_that_is_not_easynet(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    assert _refused(load_checkpoint, tmp_path / "plain.pt", kind=CheckpointError) == (
        "plain.pt is not an EasyNet-3D checkpoint (no 'easynet-3d-checkpoint' header); expected a file written by "
        "`easynet train` or the app"
    )
