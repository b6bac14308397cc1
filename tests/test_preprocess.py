"""Tests of the one preprocessing path: fitting an image into the square input and mapping maps back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from easynet.config import MODEL_PRESETS
from easynet.data.preprocess import Frame
from easynet.predict import prepare_input


def test_letterbox_keeps_aspect_and_pads_centred():
    frame = Frame.fit((60, 80), 16, "letterbox")
    # 80 -> 16 (scale 0.2), 60 -> 12 rows, padded by 2 rows above and below
    assert (frame.top, frame.left, frame.height, frame.width) == (2, 0, 12, 16)
    valid = frame.valid
    assert valid.sum() == 12 * 16 and not valid[:2].any() and not valid[14:].any()


def test_stretch_fills_the_square():
    frame = Frame.fit((60, 80), 16, "stretch")
    assert (frame.top, frame.left, frame.height, frame.width) == (0, 0, 16, 16) and frame.valid.all()


def test_pad_is_the_authors_zero_padding_to_a_square():
    """3D-ADS: sides rounded up to 100 px, centred on a zero square of the larger one, then resized to S."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (150, 230, 3)).astype(np.uint8)
    frame = Frame.fit(rgb.shape[:2], 32, "pad")
    assert frame.padded == 300
    square = np.zeros((300, 300, 3), np.float32)
    square[75:225, 35:265] = rgb / 255.0  # (300 - 150) // 2 rows and (300 - 230) // 2 columns of padding
    np.testing.assert_allclose(frame.image(rgb), cv2.resize(square, (32, 32)), atol=1e-6)
    assert Frame.fit((800, 800), 32, "pad").padded == 800 and Frame.fit((800, 600), 32, "pad").padded == 800


@pytest.mark.parametrize("mode, size", [("letterbox", 32), ("stretch", 32), ("pad", 40)])  # pad: 100 -> 40
def test_defect_pixel_round_trips_to_its_place(mode, size):
    """A 60x80 image with a small defect: the defect lands where the frame says, and the map of it maps
    back onto the original pixels at the same place."""
    rgb = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), bool)
    rgb[30:35, 50:55] = 255  # 5x5 px defect; centre (32, 52)
    mask[30:35, 50:55] = True
    frame = Frame.fit(rgb.shape[:2], size, mode)
    small = frame.image(rgb)
    small_mask = frame.mask(mask)
    rows, cols = np.nonzero(small_mask)
    scale_r, scale_c = frame.height / 60, frame.width / 80
    assert abs(rows.mean() - (frame.top + 32.5 * scale_r - 0.5)) <= 1.0
    assert abs(cols.mean() - (frame.left + 52.5 * scale_c - 0.5)) <= 1.0
    assert small[small_mask].mean() > 0.5 and small[~small_mask].mean() < 0.1
    back = frame.to_original(small_mask.astype(np.float32))
    assert back.shape == (60, 80)
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert back[32, 52] > 0.5 and abs(peak[0] - 32) <= 3 and abs(peak[1] - 52) <= 3
    assert back[mask].mean() > 0.5 and back[~mask].mean() < 0.05


def test_prepare_input_uses_the_checkpoint_resize():
    rgb = np.full((60, 80, 3), 200, np.uint8)
    base = MODEL_PRESETS["lite"].replace(image_size=32, modality="rgb")
    boxed = prepare_input(rgb, None, base.replace(resize="letterbox"))
    assert boxed.frame.mode == "letterbox" and boxed.rgb[:4].max() == 0.0  # padding rows are black
    assert boxed.rgb[boxed.frame.valid].min() == pytest.approx(200 / 255, abs=1e-3)
    stretched = prepare_input(rgb, None, base)
    assert stretched.rgb.min() == pytest.approx(200 / 255, abs=1e-3)


def test_unknown_resize_mode_is_refused():
    with pytest.raises(ValueError, match="resize must be one of"):
        MODEL_PRESETS["lite"].replace(resize="crop")


def test_predictor_maps_go_back_onto_the_uploaded_pixels():
    import torch

    from easynet.checkpoint import Calibration
    from easynet.model import EasyNet
    from easynet.predict import Predictor

    torch.manual_seed(0)
    cfg = MODEL_PRESETS["lite"].replace(image_size=32, modality="rgb", resize="letterbox", base_width=4, head_width=8)
    predictor = Predictor(EasyNet(cfg), Calibration(), torch.device("cpu"), backend="eager")
    rgb = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    p = predictor.predict(rgb)
    assert p.heatmap.shape == (32, 32) and p.heatmap_original.shape == (60, 80)
    frame = p.inputs.frame
    assert np.allclose(p.on_original(p.anomaly_map), frame.to_original(p.anomaly_map))
    # the score ignores the padding: a map that is hot only on padding rows scores nothing
    from easynet.predict import image_scores, valid_masks

    hot = torch.zeros(1, 32, 32)
    hot[0, : frame.top] = 1.0
    assert float(image_scores(hot, 32, valid_masks([p.inputs]))[0]) == 0.0
    assert float(image_scores(hot, 32)[0]) > 0.0
