"""Tests of the one preprocessing path: fitting an image into the square input and mapping maps back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from easynet.config import MODEL_PRESETS
from easynet.data.preprocess import Frame
from easynet.inputs import prepare_input


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
    base = MODEL_PRESETS["lite"].replace(image_size=32, modality="rgb", resize="stretch")
    boxed = prepare_input(rgb, None, base.replace(resize="letterbox"))
    assert boxed.frame.mode == "letterbox" and boxed.rgb[:4].max() == 0.0  # padding rows are black
    assert boxed.rgb[boxed.frame.valid].min() == pytest.approx(200 / 255, abs=1e-3)
    stretched = prepare_input(rgb, None, base)
    assert stretched.rgb.min() == pytest.approx(200 / 255, abs=1e-3)


def test_an_object_framed_rgbd_model_without_depth_frames_the_rgb_object():
    """No depth map: the RGB-D model trained on depth-framed parts gets the part framed from the RGB image; with
    no part in sight, or for an RGB-only model (trained on whole images), the whole image is the square."""
    rgb = np.full((200, 240, 3), 120, np.uint8)
    rgb[50:80, 60:90] = (200, 30, 30)  # a 30x30 red part on grey
    cfg = MODEL_PRESETS["lite"].replace(image_size=32, resize="object")
    framed = prepare_input(rgb, None, cfg)
    part = np.zeros((200, 240), bool)
    part[50:80, 60:90] = True
    expected = Frame.fit((200, 240), 32, "object", part)  # the square plane removal's foreground would give
    assert framed.framed_from == "rgb" and framed.frame.padded == expected.padded == 60  # OBJECT_MIN_SIDE of 240
    assert np.abs(np.subtract(framed.frame.origin, expected.origin)).max() <= 2
    assert framed.rgb[16, 16] == pytest.approx(np.array([200, 30, 30]) / 255, abs=1e-3)  # the part is centred
    blank = prepare_input(np.full((200, 240, 3), 120, np.uint8), None, cfg)
    assert blank.framed_from is None and blank.frame.padded == 240
    rgb_only = prepare_input(rgb, None, cfg.replace(modality="rgb"))
    assert rgb_only.framed_from is None and rgb_only.frame.padded == 240


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
    from easynet.scoring import image_scores, valid_masks

    hot = torch.zeros(1, 32, 32)
    hot[0, : frame.top] = 1.0
    assert float(image_scores(hot, 32, valid_masks([p.inputs]))[0]) == 0.0
    assert float(image_scores(hot, 32)[0]) > 0.0


def _small_part_scene(size: int = 96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flat table with one small box (12x16 px, 1 cm high) off-centre: (rgb, z in metres, box mask)."""
    z = np.full((size, size), 0.6, np.float32)
    box = np.zeros((size, size), bool)
    box[60:72, 20:36] = True
    z[box] -= 0.01
    rgb = np.full((size, size, 3), 40, np.uint8)
    rgb[box] = (200, 120, 60)
    return rgb, z, box


def test_object_frame_gives_a_small_part_the_square():
    """ "object": a square around the foreground's bounding box plus its margin, so a part that covers 2 % of
    the image covers a third of the input, and maps go back onto the part's own pixels, 0 elsewhere."""
    from easynet.data.preprocess import OBJECT_MARGIN

    _, _, box = _small_part_scene()
    frame = Frame.fit(box.shape, 32, "object", box)
    side = round(16 * (1 + 2 * OBJECT_MARGIN))  # the box's longer side is 16 px
    assert frame.padded == max(side, round(0.25 * 96)) and frame.valid.all()
    small = frame.mask(box)
    assert box.mean() < 0.03 and small.mean() == pytest.approx(12 * 16 / 24**2, abs=0.02)
    rows, cols = np.nonzero(small)
    assert abs(rows.mean() - 15.5) <= 1.5 and abs(cols.mean() - 15.5) <= 1.5  # centred in the square
    back = frame.to_original(small.astype(np.float32))
    assert back.shape == box.shape and back[box].mean() > 0.9
    far = np.ones_like(box)
    far[50:82, 10:46] = False  # well outside the framed square
    assert back[far].max() == 0.0


def test_object_frame_pads_where_the_square_leaves_the_image():
    part = np.zeros((64, 64), bool)
    part[0:6, 0:6] = True  # in the corner: the square around it reaches past the top and left edges
    frame = Frame.fit(part.shape, 32, "object", part)
    assert frame.origin[0] < 0 and frame.origin[1] < 0 and frame.pads
    rgb = np.full((64, 64, 3), 255, np.uint8)
    image = frame.image(rgb)
    assert not frame.valid.all() and (frame.top, frame.left) == (10, 10)  # 5 source px of padding, 2x
    assert image[:9, :9].max() == 0.0 and image[frame.valid].mean() > 0.95  # bilinear blurs the edge row only
    # without a foreground (no depth, or none found) the square is the whole image, centred
    whole = Frame.fit((60, 80), 16, "object", None)
    assert (whole.top, whole.left, whole.height, whole.width) == (2, 0, 12, 16) and whole.padded == 80


def test_prepare_input_frames_rgb_and_depth_on_the_same_part():
    """RGB, depth and foreground share the frame that plane removal found; stretch would leave the part small."""
    rgb, z, box = _small_part_scene()
    cfg = MODEL_PRESETS["lite"].replace(image_size=32, resize="object", depth_scale=0.01)
    framed = prepare_input(rgb, z, cfg)
    stretched = prepare_input(rgb, z, cfg.replace(resize="stretch"))
    assert framed.frame.mode == "object" and framed.frame.padded < 96
    assert framed.foreground.mean() > 5 * stretched.foreground.mean()
    part = framed.foreground
    near = ndimage.binary_dilation(part, iterations=2)  # bilinear depth spreads past the nearest-neighbour mask
    assert framed.depth[part].min() > 0 and framed.depth[~near].max() == 0.0
    inside = ndimage.binary_erosion(part)  # the part's colour inside it (bilinear blends its edge)
    assert np.abs(framed.rgb[inside] - np.array([200, 120, 60]) / 255).max() < 0.01
    back = framed.frame.to_original(part.astype(np.float32))
    assert back[box].mean() > 0.8 and back[~box].mean() < 0.02


def test_object_frames_survive_the_depth_cache(tmp_path):
    """A loader with resize "object" gives the same frame and inputs from a fresh computation and from cache."""
    from helpers import make_mvtec3d_tree

    from easynet.data.mvtec3d import MVTec3D

    root = make_mvtec3d_tree(tmp_path / "data", size=64).parent
    kwargs = dict(image_size=32, resize="object", cache_dir=tmp_path / "cache")
    first = MVTec3D(root, "toy", "train", **kwargs)[0]
    again = MVTec3D(root, "toy", "train", **kwargs)[0]
    assert first.frame.mode == "object" and first.frame == again.frame
    assert first.frame.padded < 64 or first.frame.origin != (0, 0)
    np.testing.assert_array_equal(first.depth, again.depth)
    np.testing.assert_array_equal(first.rgb, again.rgb)
