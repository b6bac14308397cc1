"""Synthetic anomalies: Perlin masks, foreground gating, clean fraction, per-modality targets, textures."""

import numpy as np
import pytest

from easynet.config import SynthConfig
from easynet.synth import (
    AnomalySynthesizer,
    TextureSource,
    augment_texture,
    perlin_mask,
    perlin_noise,
    procedural_texture,
)

S = 64


def scene():
    rgb = np.full((S, S, 3), 0.5, np.float32)
    depth = np.zeros((S, S), np.float32)
    depth[16:48, 16:48] = 0.8
    return rgb, depth, depth > 0


def test_perlin_noise_range_and_determinism():
    a = perlin_noise((64, 64), (4, 4), np.random.default_rng(1))
    b = perlin_noise((64, 64), (4, 4), np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == (64, 64)
    assert -1.5 < a.min() < 0 < a.max() < 1.5
    mask, noise = perlin_mask(S, np.random.default_rng(2), SynthConfig())
    assert mask.dtype == bool and np.array_equal(mask, noise > 0.5)


def test_anomalies_stay_in_foreground_and_about_half_are_clean():
    rgb, depth, fg = scene()
    synth = AnomalySynthesizer()
    rng = np.random.default_rng(0)
    labels = []
    for _ in range(200):
        out = synth(rgb, depth, fg, rng)
        labels.append(out.label)
        assert not out.mask[~fg].any()
        if out.label == 0:
            assert out.mask.sum() == 0 and np.array_equal(out.rgb, rgb)
        else:
            assert out.mask.sum() > 0
    assert 0.3 < np.mean(labels) < 0.55  # half are drawn clean; a few masks miss the object


def test_kinds_change_the_right_modality():
    rgb, depth, fg = scene()
    for kind, weights in (("rgb", (0, 1, 0)), ("depth", (0, 0, 1)), ("both", (1, 0, 0))):
        synth = AnomalySynthesizer(SynthConfig(kind_weights=weights, beta_max=0.0))
        rng = np.random.default_rng(3)
        out = synth(rgb, depth, fg, rng, force=True)
        while out.label == 0:
            out = synth(rgb, depth, fg, rng, force=True)
        m = out.mask > 0
        rgb_changed = np.abs(out.rgb - rgb).max(axis=2)[m].max() > 0
        depth_changed = np.abs(out.depth - depth)[m].max() > 0
        assert rgb_changed == (kind != "depth")
        assert depth_changed == (kind != "rgb")
        assert (out.mask_rgb.sum() > 0) == (kind != "depth")  # RGB head is not asked to see depth-only anomalies


def test_rgb_only_when_no_depth():
    rgb, _, _ = scene()
    out = AnomalySynthesizer()(rgb, None, None, np.random.default_rng(0), force=True)
    assert out.depth is None and out.label == 1 and np.array_equal(out.mask, out.mask_rgb)


def test_textures_are_finite_and_in_range():
    rng = np.random.default_rng(0)
    for _ in range(500):  # regression: a brightness shift below 0 followed by gamma gave NaN
        tex = augment_texture(procedural_texture(16, rng), rng)
        assert np.isfinite(tex).all() and tex.min() >= 0 and tex.max() <= 1


def test_texture_folder(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 200, np.uint8))
    tex = TextureSource(tmp_path).sample(16, np.random.default_rng(0))
    assert tex.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="no texture images"):
        TextureSource(tmp_path / "missing")


def test_depth_anomalies_are_fractions_of_the_depth_input_in_the_mask_only():
    """0.1-0.5 units of the depth input (of a metric model's fixed scale: 5-25 mm at 0.05 m per unit), mask only."""
    rgb, depth, fg = scene()
    synth = AnomalySynthesizer(SynthConfig(kind_weights=(0.0, 0.0, 1.0)))
    peaks = []
    for seed in range(30):
        s = synth(rgb, depth, fg, np.random.default_rng(seed), force=True)
        if s.label:
            moved = np.abs(s.depth - depth)  # depth units
            assert (moved[s.mask == 0] == 0).all()
            peaks.append(moved.max())
    peaks = np.array(peaks)
    assert len(peaks) > 10 and peaks.max() <= 0.5 + 1e-6 and np.median(peaks) > 0.1  # not millimetres (< 0.08)
