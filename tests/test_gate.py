"""Gate: entropies against hand-computed values, and the fused map is picked exactly when the rule says so."""

import math

import numpy as np
import pytest
import torch

from easynet.config import MODEL_PRESETS
from easynet.gate import attention_entropy, histogram_entropy, select, use_fused
from easynet.model import EasyNet


def test_histogram_entropy_hand_computed():
    # 4 values in 2 bins (0.1, 0.1 | 0.9, 0.9) -> 1 bit; out-of-range values are dropped
    pooled = torch.tensor([[0.1, 0.1, 0.9, 0.9, 1.5, -2.0], [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]])
    h = histogram_entropy(pooled)
    assert abs(float(h[0]) - 1.0) < 1e-5
    assert abs(float(h[1])) < 1e-5  # one bin -> 0 bits
    # agrees with torch.histc per image
    x = torch.rand(3, 50)
    for i in range(3):
        p = torch.histc(x[i], 256, 0, 1)
        p = p / p.sum()
        ref = -(p * torch.log2(p + 1e-12)).sum()
        assert abs(float(histogram_entropy(x)[i]) - float(ref)) < 1e-4


def test_attention_entropy_hand_computed():
    uniform = torch.full((1, 8), 0.5)
    assert abs(float(attention_entropy(uniform)[0]) - 1.0) < 1e-6
    peaked = torch.tensor([[1.0, 1e-9, 1e-9, 1e-9]])
    assert float(attention_entropy(peaked)[0]) < 0.01
    two = torch.tensor([[0.5, 0.5, 0.0, 0.0]]).clamp_min(1e-12)
    assert abs(float(attention_entropy(two)[0]) - 1.0 / math.log2(4)) < 1e-4


def test_the_entropy_rule_is_a_strict_inequality_and_the_authors_is_not():
    h_rgb = torch.tensor([0.5, 0.5, 0.5])
    h_fused = torch.tensor([0.6, 0.75, 0.8])  # 0.5 + 0.25 is exact in float32
    assert use_fused("control", h_rgb, h_fused, 0.25).tolist() == [False, False, True]
    assert use_fused("control", h_rgb, h_fused, 0.25, inclusive=True).tolist() == [False, True, True]


def test_close_and_open_ignore_the_rule_and_keep_the_input_kind():
    h = np.array([0.1, 0.9])
    closed, opened = use_fused("close", h, h + 5), use_fused("open", h, h - 5)
    assert isinstance(closed, np.ndarray) and closed.dtype == bool and closed.tolist() == [False, False]
    assert opened.tolist() == [True, True]
    assert use_fused("open", torch.zeros(3), torch.zeros(3)).dtype == torch.bool


def test_the_score_rule_picks_the_more_alarmed_head_and_ties_go_to_rgb():
    rgb, fused = np.array([1.0, 1.0, 2.0]), np.array([1.5, 1.0, 1.9])
    assert use_fused("control", None, None, rule="score", ratio_rgb=rgb, ratio_fused=fused).tolist() == [
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="ratios"):
        use_fused("control", None, None, rule="score")
    with pytest.raises(ValueError, match="gate mode"):
        use_fused("half-open", None, None)


def test_select_modes():
    a, b = torch.zeros(2, 4, 4), torch.ones(2, 4, 4)
    used = torch.tensor([True, False])
    assert select("close", a, b, used).sum() == 0
    assert select("open", a, b, used).sum() == 32
    assert select("control", a, b, used)[0].sum() == 16 and select("control", a, b, used)[1].sum() == 0


def test_model_gate_follows_entropy_rule():
    torch.manual_seed(0)
    model = EasyNet(MODEL_PRESETS["lite"].replace(image_size=32)).eval()
    rgb, depth = torch.rand(4, 3, 32, 32), torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        full = model(rgb, depth)
        h_rgb, h_fused = attention_entropy(full.attn_rgb), attention_entropy(full.attn_fused)
        diff = (h_fused - h_rgb).sort().values
        alpha = float((diff[1] + diff[2]) / 2)  # opens for exactly two images
        gated = model.forward_gated(rgb, depth, "control", alpha)
        expected = h_fused > h_rgb + alpha
        assert gated.used_fused.tolist() == expected.tolist() and int(expected.sum()) == 2
        p_rgb = torch.softmax(full.logits_rgb, 1)[:, 1]
        p_fused = torch.softmax(full.logits_fused, 1)[:, 1]
        torch.testing.assert_close(gated.anomaly_map, select("control", p_rgb, p_fused, expected), atol=1e-5, rtol=1e-4)
        assert model.forward_gated(rgb, depth, "close").used_fused.sum() == 0
        assert model.forward_gated(rgb, depth, "open").used_fused.all()


def test_runner_mode_asks_for_both_heads_only_for_score_rule_control_with_depth():
    from easynet.gate import BOTH_HEADS, runner_mode

    assert runner_mode("control", "score", True) == BOTH_HEADS
    assert runner_mode("control", "score", False) == "control"  # no depth: the gate is closed anyway
    assert runner_mode("control", "entropy", True) == "control"
    assert [runner_mode(g, "score", True) for g in ("open", "close")] == ["open", "close"]
