"""Metrics against small cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from easynet.metrics import (
    Metrics,
    aupro,
    bootstrap_image_auroc,
    compute_metrics,
    image_ap,
    image_auroc,
    per_defect_auroc,
    pixel_ap,
    pixel_auroc,
    pro_curve,
)


def _two_images() -> tuple[np.ndarray, np.ndarray]:
    """Image A is good (16 negatives); image B has two regions:
    R1 = {(0,0), (1,1)}, one region only because diagonal pixels are 8-connected; scores 0.95 and 0.5.
    R2 = {(3,1), (3,2), (3,3)}; scores 0.99. B's other 11 pixels are negatives scoring 0.
    Negatives: 27 in all; sorted scores = 25 x 0.0, 0.6, 0.97 (A[0,0] = 0.6, A[2,2] = 0.97).
    """
    masks = np.zeros((2, 4, 4), np.uint8)
    maps = np.zeros((2, 4, 4))
    masks[1, 0, 0] = masks[1, 1, 1] = 255
    masks[1, 3, 1:] = 253  # class ids are > 0 too
    maps[1, 0, 0], maps[1, 1, 1], maps[1, 3, 1:] = 0.95, 0.5, 0.99
    maps[0, 0, 0], maps[0, 2, 2] = 0.6, 0.97
    return masks, maps


def test_pro_curve_by_hand():
    # With 27 thresholds every sorted negative position p is used: FPR = 1 - (p + 1) / 27.
    # p = 0..24: threshold 0 -> every positive is above -> PRO 1.
    # p = 25: threshold 0.6, FPR 1/27: R1 overlap 1/2 (0.95 > 0.6, 0.5 is not), R2 overlap 1 -> PRO 0.75.
    # p = 26: threshold 0.97, FPR 0: R1 0, R2 1 -> PRO 0.5. (Pixel-weighted would give 0.8 and 0.6;
    # 4-connected regions would give 2/3 and 1/3.) Plus the point (1, 1).
    masks, maps = _two_images()
    fprs, pros = pro_curve(masks, maps, num_thresholds=27)
    assert fprs[0] == 0 and pros[0] == pytest.approx(0.5)
    assert fprs[1] == pytest.approx(1 / 27) and pros[1] == pytest.approx(0.75)
    assert fprs[-1] == 1.0 and pros[-1] == 1.0 and len(fprs) == 28
    np.testing.assert_allclose(pros[2:], 1.0)


def test_aupro_by_hand():
    # Area up to 0.3: (0.5 + 0.75) / 2 / 27 + (0.75 + 1) / 2 / 27 + (0.3 - 2 / 27) * 1
    #   = 0.3 - 0.5 / 27; divided by 0.3 -> 1 - 5 / 81 = 76 / 81.
    masks, maps = _two_images()
    assert aupro(masks, maps, num_thresholds=27) == pytest.approx(76 / 81, abs=1e-12)
    assert aupro(masks, maps) == pytest.approx(76 / 81, abs=1e-12)  # 100 thresholds repeat positions
    # Limit 0.5 / 27 falls between (0, 0.5) and (1/27, 0.75): interpolated PRO 0.625,
    # area 0.5 * (0.5 + 0.625) * 0.5 / 27, divided by the limit -> 0.5625.
    assert aupro(masks, maps, fpr_limit=0.5 / 27, num_thresholds=27) == pytest.approx(0.5625, abs=1e-12)


def test_aupro_perfect_and_degenerate():
    masks, maps = _two_images()
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)  # positives above every negative
    assert math.isnan(aupro(np.zeros((2, 4, 4)), maps))  # no region
    assert math.isnan(aupro(np.ones((1, 4, 4)), np.ones((1, 4, 4))))  # no negative


def test_auroc_ap_by_hand():
    # labels 0 0 1 1, scores 0.1 0.4 0.35 0.8: positive-negative pairs ranked right:
    # (0.35>0.1) yes, (0.35>0.4) no, (0.8>0.1) yes, (0.8>0.4) yes -> AUROC 3/4.
    # AP: ranking 0.8 (pos, P=1, R=1/2), 0.4 (neg), 0.35 (pos, P=2/3, R=1) -> 1/2*1 + 1/2*2/3 = 5/6.
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert image_auroc(labels, scores) == pytest.approx(0.75)
    assert image_ap(labels, scores) == pytest.approx(5 / 6)
    masks = np.array([[[0, 0], [254, 255]]])
    maps = np.array([[[0.1, 0.4], [0.35, 0.8]]])
    assert pixel_auroc(masks, maps) == pytest.approx(0.75) and pixel_ap(masks, maps) == pytest.approx(5 / 6)
    assert math.isnan(image_auroc([0, 0], [0.1, 0.2])) and math.isnan(pixel_ap(np.zeros((1, 2, 2)), maps))


def test_per_defect_and_compute_metrics():
    # hole vs good: pairs (0.5>0.1, 0.5>0.3, 0.2>0.1, 0.2<0.3) -> 3/4; cut (0.9) beats both goods -> 1.
    labels = [0, 0, 1, 1, 1]
    scores = [0.1, 0.3, 0.5, 0.2, 0.9]
    defects = ["good", "good", "hole", "hole", "cut"]
    assert per_defect_auroc(labels, scores, defects) == {"cut": 1.0, "hole": 0.75}
    masks, maps = _two_images()
    result = compute_metrics([0, 1], [0.97, 0.99], masks, maps, ["good", "hole"])
    assert isinstance(result, Metrics)
    assert set(result.to_dict()) == {"i_auroc", "i_ap", "p_auroc", "p_ap", "aupro", "per_defect_i_auroc"}
    assert result.i_auroc == 1.0 and result.aupro == pytest.approx(76 / 81)
    # P-AUROC: 5 positives x 27 negatives = 135 pairs. Negatives: 25 at 0, 0.6, 0.97.
    # 0.99 (x3) beat all 27 -> 81; 0.95 beats 26 -> 26; 0.5 beats 25 -> 25. (81 + 26 + 25) / 135.
    assert result.p_auroc == pytest.approx(132 / 135)


def test_bootstrap_image_auroc_by_hand():
    # good 0.1, 0.5; anomalous 0.4, 0.9. Each resampled pair (good, anomalous) is ordered right with probability
    # 3/4 ((0.5, 0.4) is the only wrong one), so the mean I-AUROC over resamples is 0.75. Both goods drawn as 0.5
    # and both anomalies as 0.4 (probability 1/16 > 5 %) gives 0, so the 5 % point is 0; both goods drawn as 0.1
    # (1/4) gives 1, so the 95 % point is 1.
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.4, 0.9])
    spread = bootstrap_image_auroc(labels, scores, resamples=4000, seed=3)
    assert spread["mean"] == pytest.approx(0.75, abs=0.015)
    assert spread["p5"] == 0.0 and spread["p95"] == 1.0
    separated = bootstrap_image_auroc(labels, np.array([0.1, 0.2, 0.8, 0.9]), resamples=200)
    assert separated == {"mean": 1.0, "p5": 1.0, "p95": 1.0}
    assert math.isnan(bootstrap_image_auroc(np.zeros(4), scores)["mean"])
