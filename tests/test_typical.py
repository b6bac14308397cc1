"""The typical-part reference: distances against hand-computed values, the limit rule, storage in a checkpoint, and
a reference fitted by calibration that tells the model's own part from another picture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from easynet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from easynet.typical import LIMIT_FACTOR, MIN_LIMIT, StreamReference, TypicalReference, fit_limit


def test_distance_is_the_rms_mahalanobis_distance():
    # precision 4 I: (x - mean) = (1, 1) -> d^2 = (4 + 4) / 2 dimensions = 4 -> distance 2
    ref = StreamReference(torch.zeros(2, dtype=torch.float64), 4 * torch.eye(2, dtype=torch.float64))
    assert ref.distance(np.array([1.0, 1.0])) == pytest.approx(2.0)
    assert ref.distance(np.array([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])).tolist() == pytest.approx([2.0, 0.0, 2.828427])


def test_the_limit_is_the_factor_times_the_farthest_held_out_image_with_a_floor():
    assert fit_limit(np.array([0.3, 0.9, 0.5])) == pytest.approx(LIMIT_FACTOR * 0.9)
    assert fit_limit(np.array([0.01])) == MIN_LIMIT and fit_limit(np.array([])) == MIN_LIMIT


def test_typicality_is_the_larger_stream_ratio_and_rgb_alone_without_depth():
    eye = torch.eye(2, dtype=torch.float64)
    rgb = StreamReference(torch.zeros(2, dtype=torch.float64), eye, limit=2.0)
    depth = StreamReference(torch.zeros(2, dtype=torch.float64), eye, limit=1.0)
    ref = TypicalReference(rgb, depth)
    x_rgb, x_depth = np.array([2.0, 2.0]), np.array([3.0, 3.0])  # distances 2 and 3
    assert ref.typicality(x_rgb, x_depth) == pytest.approx(3.0)  # depth: 3 / 1
    assert ref.typicality(x_rgb, None) == pytest.approx(1.0)  # rgb only: 2 / 2


def test_a_fitted_gaussian_finds_the_outlier():
    rng = np.random.default_rng(0)
    seen = rng.normal(0, 1, (200, 8))
    stream = StreamReference.fit(seen)
    assert stream.distance(rng.normal(0, 1, 8)) < 2 < stream.distance(np.full(8, 6.0))


def test_the_reference_survives_a_checkpoint_and_a_broken_one_is_refused(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    ref = ckpt.calibration.reference
    assert ref is not None and ref.depth is not None  # calibration fitted it (RGB-D model)
    again = load_checkpoint(save_checkpoint(ckpt, tmp_path / "copy.pt")).calibration.reference
    assert again.rgb.limit == ref.rgb.limit and torch.equal(again.depth.precision, ref.depth.precision)
    for edit, message in (
        (lambda r: setattr(r.rgb, "limit", -1.0), "limit is -1.0"),
        (lambda r: r.depth.mean.fill_(math.nan), "non-finite"),
        (lambda r: setattr(r.rgb, "precision", torch.eye(3, dtype=torch.float64)), "do not fit together"),
    ):
        broken = load_checkpoint(tiny_checkpoint)
        edit(broken.calibration.reference)
        path = save_checkpoint(broken, tmp_path / "broken.pt")
        with pytest.raises(CheckpointError, match=f"typical-part reference's .*{message}"):
            load_checkpoint(path)


def test_an_image_of_something_else_is_less_typical_than_the_models_own_part(tiny_tree, tiny_checkpoint):
    from easynet.predict import Predictor

    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    rgb, xyz = tiny_tree / "toy/test/good/rgb/000.png", tiny_tree / "toy/test/good/xyz/000.tiff"
    own = predictor.predict(rgb, xyz)
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    other = predictor.predict(noise, None)
    assert own.typicality is not None and other.typicality > own.typicality
    if other.typicality > 1:
        assert other.verdict.label == "UNSURE" and "does not look like toy" in other.verdict.reason
