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


def test_metric_depth_anomalies_are_millimetres_in_the_mask_only():
    """With a metric model (0.05 m per depth unit) dents and bumps are 0.3-4 mm, applied in metres."""
    rgb, depth, fg = scene()
    scale = 0.05
    cfg = SynthConfig(kind_weights=(0.0, 0.0, 1.0), depth_amplitude_mm=(0.3, 4.0))
    synth = AnomalySynthesizer(cfg, depth_scale=scale)
    peaks = []
    for seed in range(30):
        s = synth(rgb, depth, fg, np.random.default_rng(seed), force=True)
        if not s.label:
            continue
        moved = np.abs(s.depth - depth) * scale  # metres
        assert (moved[s.mask == 0] == 0).all()
        peaks.append(moved.max())
    peaks = np.array(peaks)
    assert len(peaks) > 10 and peaks.max() <= 0.004 + 1e-6
    assert (peaks < 0.001).any() and (peaks > 0.001).any()  # sub-millimetre and millimetre dents both occur


def test_metric_depth_anomalies_are_fractions_of_the_scale_by_default():
    """The default for a metric model: 0.1-0.5 units of its fixed scale (5-25 mm at 0.05 m per unit), mask only."""
    rgb, depth, fg = scene()
    synth = AnomalySynthesizer(SynthConfig(kind_weights=(0.0, 0.0, 1.0)), depth_scale=0.05)
    peaks = []
    for seed in range(30):
        s = synth(rgb, depth, fg, np.random.default_rng(seed), force=True)
        if s.label:
            moved = np.abs(s.depth - depth)  # depth units
            assert (moved[s.mask == 0] == 0).all()
            peaks.append(moved.max())
    peaks = np.array(peaks)
    assert len(peaks) > 10 and peaks.max() <= 0.5 + 1e-6 and np.median(peaks) > 0.1  # not millimetres (< 0.08)


def test_dome_profile_is_smooth_per_blob_and_zero_off_the_mask():
    """Hand-made case: a 10x10 blob and a 3x3 blob; each peaks at 1 in its middle, 0 on its border and outside,
    and rises without a step (a rim profile jumps at the border instead)."""
    from easynet.synth import dome_profile

    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[15:18, 15:18] = True
    d = dome_profile(mask)
    assert d[~mask].max() == 0.0
    assert d[7, 7] == pytest.approx(1.0) and d[16, 16] == pytest.approx(1.0)  # the small blob peaks too
    assert d[2, 7] == 0.0 and d[11, 7] == 0.0  # border pixels
    row = d[2:12, 7]
    assert np.abs(np.diff(row)).max() < 0.6  # no cliff: the rise spreads over several pixels
    assert (np.diff(row[:5]) >= 0).all() and (np.diff(row[5:]) <= 0).all()


def test_depth_profile_weights_pick_dome_or_rim():
    """Depth-only anomalies under dome weights have no step at the mask's border; under rim weights they do."""
    depth = np.zeros((128, 128), np.float32)
    depth[16:112, 16:112] = 0.8
    rgb, fg = np.full((128, 128, 3), 0.5, np.float32), depth > 0
    for weights, stepped in (((1.0, 0.0), True), ((0.0, 1.0), False)):
        cfg = SynthConfig(kind_weights=(0, 0, 1), depth_profile_weights=weights, max_perlin_scale=2)  # big blobs
        synth = AnomalySynthesizer(cfg)
        rng = np.random.default_rng(5)
        out = synth(rgb, depth, fg, rng, force=True)
        while out.label == 0:
            out = synth(rgb, depth, fg, rng, force=True)
        moved = np.abs(out.depth - depth)
        m = out.mask > 0
        edge = m & ~np.pad(m, 1)[2:, 1:-1] | m & ~np.pad(m, 1)[:-2, 1:-1]  # mask pixels with a neighbour outside
        ratio = moved[edge].mean() / moved[m].max()
        assert (ratio > 0.2) == stepped, ratio
