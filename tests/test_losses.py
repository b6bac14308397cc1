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


def test_fused_depth_view_term_uses_the_depth_mask_and_its_weight():
    from easynet.losses import EasyNetLoss, focal_loss
    from easynet.model import EasyNetOutput

    torch.manual_seed(0)
    rgb, zeros = torch.rand(1, 3, 16, 16), torch.zeros(1, 2, 16, 16)
    view = torch.randn(1, 2, 16, 16)
    out = EasyNetOutput(rgb.clone(), None, zeros, zeros, None, None, None, None, view)
    mask = torch.ones(1, 1, 16, 16)  # the anomaly ...
    mask_depth = torch.zeros(1, 1, 16, 16)  # ... is colour-only: the depth view must call it clean
    off = EasyNetLoss(TrainConfig())(out, rgb, None, mask, mask_depth=mask_depth)
    on = EasyNetLoss(TrainConfig(fused_depth_view_weight=2.0))(out, rgb, None, mask, mask_depth=mask_depth)
    expected = focal_loss(view, mask_depth)
    torch.testing.assert_close(on.focal_fused_depth, expected)
    assert float(expected) != pytest.approx(float(focal_loss(view, mask)))
    torch.testing.assert_close(on.total, off.total + 2.0 * expected)
    without_mask = EasyNetLoss(TrainConfig(fused_depth_view_weight=2.0))(out, rgb, None, mask)
    assert float(without_mask.focal_fused_depth) == 0.0 and float(without_mask.total) == pytest.approx(float(off.total))


def test_depth_head_term_uses_the_depth_mask_and_the_focal_weight():
    from easynet.losses import EasyNetLoss, focal_loss
    from easynet.model import EasyNetOutput

    torch.manual_seed(0)
    rgb, zeros = torch.rand(1, 3, 16, 16), torch.zeros(1, 2, 16, 16)
    head = torch.randn(1, 2, 16, 16)
    out = EasyNetOutput(rgb.clone(), None, zeros, zeros, None, None, None, None, logits_depth=head)
    plain = EasyNetOutput(rgb.clone(), None, zeros, zeros, None, None, None, None)
    mask = torch.ones(1, 1, 16, 16)  # the anomaly ...
    mask_depth = torch.zeros(1, 1, 16, 16)  # ... is colour-only: the depth head must call it clean
    cfg = TrainConfig(weight_focal=3.0)
    on = EasyNetLoss(cfg)(out, rgb, None, mask, mask_depth=mask_depth)
    off = EasyNetLoss(cfg)(plain, rgb, None, mask, mask_depth=mask_depth)
    expected = focal_loss(head, mask_depth)
    torch.testing.assert_close(on.focal_depth, expected)
    assert float(expected) != pytest.approx(float(focal_loss(head, mask)))
    torch.testing.assert_close(on.total, off.total + 3.0 * expected)
    assert float(off.focal_depth) == 0.0
    assert float(EasyNetLoss(cfg)(out, rgb, None, mask).focal_depth) == 0.0  # no depth mask, no term
