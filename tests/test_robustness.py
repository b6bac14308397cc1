"""Crafted files refused before decoding, non-finite weights / scores / losses never becoming a verdict."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
import torch

from easynet.card import ModelCard
from easynet.checkpoint import Calibration, Checkpoint, load_checkpoint, save_checkpoint
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.data.io import depth_shape, npy_header, read_depth, read_rgb
from easynet.errors import CheckpointError, InputError, NonFiniteError
from easynet.model import EasyNet
from easynet.predict import Predictor

CFG = MODEL_PRESETS["lite"].replace(image_size=32, depth_scale=0.02)  # a fitted metric scale, metres
ALLOCATION_LIMIT = 64 * 1024**2  # bytes; the crafted files would decode to about 1 GB and 480 GB


def _peak_while(fn) -> tuple[Exception, int]:
    """(the error fn raised, the peak of numpy/Python allocations meanwhile)."""
    tracemalloc.start()
    try:
        fn()
    except Exception as err:  # returned to the test
        error = err
    else:
        error = None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak


def test_zlib_tiff_with_a_huge_third_dimension_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.tiff"
    tifffile.imwrite(path, np.zeros((250, 250, 4000), np.float32), compression="zlib")  # ~1 MB file, 1 GB of data
    assert path.stat().st_size < 5 * 1024**2
    for reader in (read_depth, read_rgb):
        error, peak = _peak_while(lambda r=reader: r(path))
        assert isinstance(error, InputError)
        assert (
            "bomb.tiff declares 250x250x4000 values, 4000 per pixel; expected one image of at most 4 channels"
            in str(error)
        )
        assert peak < ALLOCATION_LIMIT


def test_npy_whose_header_claims_200000_squared_is_refused_from_the_header(tmp_path):
    path = tmp_path / "big.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (200000, 200000, 3)})
        f.write(b"\0" * 64)
    assert npy_header(path) == ((200000, 200000, 3), np.dtype("<f4"))
    error, peak = _peak_while(lambda: read_depth(path))
    assert isinstance(error, InputError)
    assert str(error) == (
        "depth big.npy is 200000x200000 pixels, more than the limit of 40000000 pixels; downscale "
        "it or set EASYNET_MAX_PIXELS to raise the limit"
    )
    assert peak < ALLOCATION_LIMIT
    assert depth_shape(path) == (200000, 200000)  # the header alone, nothing loaded


def test_npy_with_thousands_of_channels_is_refused_before_loading(tmp_path):
    path = tmp_path / "deep.npy"
    np.save(path, np.zeros((16, 16, 400), np.float32))
    with pytest.raises(InputError, match=r"deep.npy declares 16x16x400 values, 400 per pixel"):
        read_depth(path)


def test_npy_header_of_python_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="holds Python objects"):
        npy_header(path)


def _save(tmp_path, model: EasyNet, calibration: Calibration | None = None, name: str = "m.pt"):
    return save_checkpoint(Checkpoint(CFG, model.state_dict(), calibration or Calibration()), tmp_path / name)


def test_checkpoint_with_nan_weights_is_refused_at_load(tmp_path):
    model = EasyNet(CFG)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    path = _save(tmp_path, model, name="nan.pt")
    with pytest.raises(CheckpointError, match=r"nan.pt holds non-finite weights \(NaN or inf in rgb\.encoder"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        Predictor.from_checkpoint(path, "cpu")


@pytest.mark.parametrize(
    "field, value", [("alpha", float("nan")), ("threshold", float("inf")), ("threshold", 0.0), ("threshold", "high")]
)
def test_checkpoint_with_a_broken_calibration_is_refused(tmp_path, field, value):
    cal = Calibration()
    if field == "alpha":
        cal.alpha = value
    else:
        cal.fused.threshold = value
    path = _save(tmp_path, EasyNet(CFG), cal)
    with pytest.raises(CheckpointError, match="has a broken calibration: .* expected a finite number"):
        load_checkpoint(path)


def test_checkpoint_with_an_absurd_config_is_refused_before_building(tmp_path):
    path = _save(tmp_path, EasyNet(CFG))
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["base_width"] = 10**7  # would allocate terabytes if built
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="impossible model config: base_width is 10000000, expected an integer"):
        load_checkpoint(path)


def test_a_non_finite_score_is_an_error_never_a_verdict(tiny_tree):
    model = EasyNet(CFG)
    with torch.no_grad():
        for p in model.rgb_head.parameters():
            p.fill_(float("nan"))
    predictor = Predictor(model, Calibration(), torch.device("cpu"), ModelCard.of(CFG, "broken"))
    rgb = tiny_tree / "toy/test/hole/rgb/000.png"
    with pytest.raises(NonFiniteError, match=r"model broken produced a non-finite anomaly score \(nan\)"):
        predictor.predict(rgb, None, gate="close")


def test_training_whose_loss_becomes_non_finite_fails_with_a_sentence(tmp_path):
    from helpers import make_pair_folder

    from easynet.data.pairs import PairFolder
    from easynet.train import train

    make_pair_folder(tmp_path / "pairs", size=48, n_good=4, n_bad=0)
    data = PairFolder(tmp_path / "pairs", image_size=32)
    cfg = TRAIN_PRESETS["official"].replace(steps=20, batch_size=2, lr=1e30)
    out = tmp_path / "diverged.pt"
    with pytest.raises(NonFiniteError, match=r"training diverged at step \d+: the loss became (nan|inf)"):
        train(CFG, cfg, data, device="cpu", out=out, progress=False)
    assert not out.exists()
