"""Losses against hand-computed values."""

import math

import pytest
import torch

from easynet.config import TrainConfig
from easynet.losses import focal_loss, ssim_loss


def test_focal_loss_hand_computed():
    # logits (0, log 3) -> p(anomaly) = 0.75. Target 1: p_t = 0.75 (+1e-5 guard); loss = -(0.25)^2 * log(0.75)
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    target = torch.ones(1, 1, 1, 1)
    p_t = (1 - 1e-5) * 0.75 + 1e-5 * 0.25 + 1e-5
    expected = -((1 - p_t) ** 2) * math.log(p_t)
    assert abs(float(focal_loss(logits, target)) - expected) < 1e-6
    # gamma = 0 reduces to cross-entropy
    ce = -math.log(0.25 * (1 - 1e-5) + 0.75 * 1e-5 + 1e-5)
    assert abs(float(focal_loss(logits, torch.zeros(1, 1, 1, 1), gamma=0.0)) - ce) < 1e-6


def test_ssim_loss_zero_for_identical_and_positive_otherwise():
    x = torch.rand(1, 3, 32, 32)
    assert float(ssim_loss(x, x)) < 1e-6
    assert float(ssim_loss(x, torch.rand(1, 3, 32, 32))) > 0.5


def test_weights_are_applied():
    from easynet.losses import EasyNetLoss
    from easynet.model import EasyNetOutput

    rgb = torch.rand(1, 3, 16, 16)
    out = EasyNetOutput(rgb.clone(), torch.zeros(1, 1, 16, 16), torch.zeros(1, 2, 16, 16), None, None, None, None, None)
    depth = torch.ones(1, 1, 16, 16)
    terms = EasyNetLoss(TrainConfig(weight_l2_depth=3.0))(out, rgb, depth, torch.zeros(1, 1, 16, 16))
    assert abs(float(terms.l2_depth) - 1.0) < 1e-6
    assert abs(float(terms.total) - (3.0 + float(terms.ssim_rgb) + float(terms.focal_rgb))) < 1e-5


def test_the_rgb_head_is_judged_on_the_colour_part_and_the_fused_head_on_the_whole_anomaly():
    """A depth-only anomaly: the RGB head's target is clean (it cannot see it), the fused head's is the mask."""
    from easynet.losses import EasyNetLoss, focal_loss
    from easynet.model import EasyNetOutput

    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 16, 16)
    logits_rgb, logits_fused = torch.randn(1, 2, 16, 16), torch.randn(1, 2, 16, 16)
    out = EasyNetOutput(rgb.clone(), None, logits_rgb, logits_fused, None, None, None, None)
    mask, mask_rgb = torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    terms = EasyNetLoss(TrainConfig(weight_focal=2.0))(out, rgb, None, mask, mask_rgb)
    torch.testing.assert_close(terms.focal_rgb, focal_loss(logits_rgb, mask_rgb))
    torch.testing.assert_close(terms.focal_fused, focal_loss(logits_fused, mask))
    assert float(focal_loss(logits_rgb, mask_rgb)) != pytest.approx(float(focal_loss(logits_rgb, mask)))
    expected = terms.ssim_rgb + terms.l2_rgb + 2.0 * (terms.focal_rgb + terms.focal_fused)
    torch.testing.assert_close(terms.total, expected)
