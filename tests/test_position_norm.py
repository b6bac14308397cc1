"""Position-wise score normalisation: fitted on clean validation maps (leave one out), used only where it wins,
stored in the checkpoint and applied the same way by evaluate and the Predictor."""

import numpy as np
import pytest
import torch

from easynet.calibrate import NORM_EPS, NORM_MIN_IMAGES, fit_position_norm
from easynet.checkpoint import Calibration, load_checkpoint, save_checkpoint
from easynet.errors import CheckpointError


def max_score(maps: np.ndarray) -> np.ndarray:
    return maps.reshape(len(maps), -1).max(1)


def hot_corner_set(n_clean: int = 24, seed: int = 0):
    """Clean maps that always light up at one corner pixel (0.5, a little noise); each clean image has one
    anomalous copy with a weaker spot (0.3) elsewhere on top of that corner. Raw max scores cannot see the
    spot: each anomaly scores exactly as its clean image."""
    rng = np.random.default_rng(seed)
    maps, labels, source = [], [], []
    for i in range(n_clean):
        clean = rng.uniform(0.0, 0.02, (8, 8)).astype(np.float32)
        clean[0, 0] = 0.5 + 0.01 * i
        bad = clean.copy()
        bad[5, 5 - i % 3] = 0.3
        maps += [clean, bad]
        labels += [0, 1]
        source += [i, i]
    return np.stack(maps), np.array(labels), np.array(source)


def test_a_fixed_hot_spot_of_clean_parts_is_normalised_away():
    maps, labels, source = hot_corner_set()
    fit = fit_position_norm(labels, source, maps, max_score)
    assert fit.table["off"] == pytest.approx(0.5)  # the corner decides every raw score: chance
    assert fit.mean is not None and max(fit.table[str(e)] for e in NORM_EPS) == pytest.approx(1.0)
    clean = maps[labels == 0]
    # stored maps: the mean and (population) std + eps of every clean image, pixel by pixel
    eps = max(NORM_EPS, key=lambda e: (fit.table[str(e)], e))  # the best eps, ties to the larger (milder)
    np.testing.assert_allclose(fit.scale, clean.std(0) + eps, atol=1e-6)
    assert float(fit.mean[0, 0]) == pytest.approx(clean[:, 0, 0].mean(), abs=1e-6)
    # leave one out: clean image 3 is normalised by the other 23, by hand at the hot pixel
    others = np.delete(clean[:, 0, 0], 3).astype(np.float64)
    expected = (clean[3, 0, 0] - others.mean()) / (others.std() + eps)
    assert fit.held_out[6, 0, 0] == pytest.approx(expected, rel=1e-4)  # rows: clean 0, bad 0, clean 1, ...


def test_no_position_norm_where_it_does_not_win():
    rng = np.random.default_rng(1)
    maps = rng.uniform(0, 0.1, (48, 8, 8)).astype(np.float32)
    labels = np.array([0, 1] * 24)
    source = np.repeat(np.arange(24), 2)
    for i in range(1, 48, 2):  # anomalies at random places, clean maps flat: raw maxima already separate
        maps[i, rng.integers(8), rng.integers(8)] = 0.9
    fit = fit_position_norm(labels, source, maps, max_score)
    assert fit.table["off"] == pytest.approx(1.0)
    assert fit.mean is None and fit.scale is None and fit.held_out is None
    # too few clean images to estimate a spread (NORM_MIN_IMAGES): never normalised, even where it would win
    hot, hot_labels, hot_source = hot_corner_set(n_clean=NORM_MIN_IMAGES - 1)
    few = fit_position_norm(hot_labels, hot_source, hot, max_score)
    assert few.mean is None and set(few.table) == {"off"}


def normalised_calibration(size: int) -> Calibration:
    cal = Calibration()
    cal.rgb.norm_mean = torch.full((size, size), 0.25)
    cal.rgb.norm_scale = torch.full((size, size), 0.5)
    return cal


def test_the_predictor_scores_the_normalised_map(tiny_tree, tiny_checkpoint, tmp_path):
    from easynet.predict import Predictor

    ckpt = load_checkpoint(tiny_checkpoint)
    rgb = sorted((tiny_tree / "toy" / "test").glob("*/rgb/*.png"))[0]
    raw = Predictor.from_checkpoint(tiny_checkpoint, device="cpu").predict(rgb, gate="close")
    ckpt.calibration = normalised_calibration(ckpt.model_config.image_size)
    path = save_checkpoint(ckpt, tmp_path / "normed.pt")
    p = Predictor.from_checkpoint(path, device="cpu").predict(rgb, gate="close")
    np.testing.assert_allclose(p.anomaly_map, (raw.anomaly_map - 0.25) / 0.5, atol=1e-5)
    # the image score is the same mean filter's maximum, on the normalised scale
    assert p.score == pytest.approx((raw.score - 0.25) / 0.5, abs=1e-4)


def test_evaluate_applies_the_checkpoints_norm(tiny_tree, tiny_checkpoint):
    from easynet.data.registry import open_dataset
    from easynet.data.types import Split
    from easynet.evaluate import run_heads
    from easynet.pipeline import loader_options

    ckpt = load_checkpoint(tiny_checkpoint)
    model, cfg = ckpt.build_model(), ckpt.model_config
    test = open_dataset(tiny_tree, "toy", Split.TEST, **loader_options(cfg))
    items = [test[i] for i in range(3)]
    raw = run_heads(model, items, torch.device("cpu"))
    normed = run_heads(model, items, torch.device("cpu"), cal=normalised_calibration(cfg.image_size))
    np.testing.assert_allclose(normed.prob_rgb, (raw.prob_rgb - 0.25) / 0.5, atol=1e-5)
    np.testing.assert_allclose(normed.score_rgb, (raw.score_rgb - 0.25) / 0.5, atol=1e-4)


def test_norm_maps_survive_a_round_trip_and_broken_ones_are_refused(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    size = ckpt.model_config.image_size
    ckpt.calibration = normalised_calibration(size)
    back = load_checkpoint(save_checkpoint(ckpt, tmp_path / "ok.pt")).calibration
    assert back.rgb.normalised and not back.fused.normalised
    assert torch.equal(back.rgb.norm_scale, torch.full((size, size), 0.5))
    assert back.summary()["rgb"]["position_norm"] == [size, size]  # JSON-safe description, no tensor
    for broken in ({"norm_scale": torch.zeros(size, size)}, {"norm_mean": torch.zeros(size + 1, size + 1)}):
        ckpt.calibration = normalised_calibration(size)
        for key, value in broken.items():
            setattr(ckpt.calibration.rgb, key, value)
        save_checkpoint(ckpt, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match="position norm"):
            load_checkpoint(tmp_path / "bad.pt")


def test_calibration_can_be_told_not_to_normalise(tiny_tree, tiny_checkpoint):
    from easynet.calibrate import calibrate
    from easynet.data.registry import open_dataset
    from easynet.data.types import Split
    from easynet.pipeline import loader_options

    ckpt = load_checkpoint(tiny_checkpoint)
    model = ckpt.build_model()
    validation = open_dataset(tiny_tree, "toy", Split.VALIDATION, **loader_options(ckpt.model_config))
    on = calibrate(model, validation, torch.device("cpu"))
    off = calibrate(model, validation, torch.device("cpu"), position_norm=False)
    assert "position_norm_rgb" in on.metrics and "position_norm_rgb" not in off.metrics
    assert not off.rgb.normalised and not off.fused.normalised
