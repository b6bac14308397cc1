"""Model: shapes per preset x layers, gradients reach every parameter, head decomposition equals the literal."""

import pytest
import torch

from easynet.config import MODEL_PRESETS, TrainConfig
from easynet.losses import EasyNetLoss
from easynet.model import EasyNet, count_parameters

SIZE = 32


def tiny(preset: str, **kw):
    cfg = MODEL_PRESETS[preset].replace(image_size=SIZE, **kw)
    if preset == "paper":  # same layout, narrow widths so the test stays fast
        cfg = cfg.replace(base_width=4, head_width=16)
    return EasyNet(cfg)


@pytest.mark.parametrize("preset", ["paper", "lite"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_forward_shapes(preset, layers):
    model = tiny(preset, layers=layers).eval()
    cfg = model.cfg
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    out = model(rgb, depth)
    hw = cfg.head_width
    assert out.rec_rgb.shape == (2, 3, SIZE, SIZE)
    assert out.rec_depth.shape == (2, cfg.depth_channels, SIZE, SIZE)
    assert out.logits_rgb.shape == out.logits_fused.shape == (2, 2, SIZE, SIZE)
    assert out.pooled_rgb.shape == (2, layers * hw)
    assert out.pooled_fused.shape == (2, 2 * layers * hw)
    assert (out.attn_rgb is None) == (not cfg.attention)
    if cfg.attention:
        assert out.attn_fused.shape == (2, 2 * layers * hw)
    gated = model.forward_gated(rgb, depth, "control")
    assert gated.anomaly_map.shape == (2, SIZE, SIZE)
    assert ((gated.anomaly_map >= 0) & (gated.anomaly_map <= 1)).all()


def test_rgb_only_model_and_missing_depth():
    model = tiny("lite", modality="rgb").eval()
    assert not hasattr(model, "fused_head")
    out = model(torch.rand(1, 3, SIZE, SIZE))
    assert out.logits_fused is None and out.rec_depth is None
    rgbd = tiny("lite").eval()
    gated = rgbd.forward_gated(torch.rand(1, 3, SIZE, SIZE), None, "open")
    assert not gated.used_fused.any() and gated.rec_depth is None  # without depth the gate is closed


def test_first_layer_is_rgb_only_for_rgb_head():
    """The RGB head must not see depth features (the authors' 1-layer bug fed it a depth-decoder feature)."""
    model = tiny("lite", layers=1).eval()
    rgb = torch.rand(1, 3, SIZE, SIZE)
    a = model(rgb, torch.rand(1, 1, SIZE, SIZE)).logits_rgb
    b = model(rgb, torch.rand(1, 1, SIZE, SIZE)).logits_rgb
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_decomposed_heads_equal_literal_concat(layers):
    model = tiny("paper", layers=layers).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    fast, naive = model(rgb, depth), model(rgb, depth, naive=True)
    torch.testing.assert_close(fast.logits_rgb, naive.logits_rgb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.logits_fused, naive.logits_fused, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("preset", ["paper", "lite"])
def test_every_parameter_gets_a_gradient(preset):
    model = tiny(preset).train()
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    mask = (torch.rand(2, 1, SIZE, SIZE) > 0.7).float()
    terms = EasyNetLoss(TrainConfig())(model(rgb, depth), rgb, depth, mask)
    terms.total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_paper_preset_matches_official_parameter_count():
    model = EasyNet(MODEL_PRESETS["paper"])
    assert round(count_parameters(model) / 1e6, 1) == 140.6


def hand_count(cfg) -> int:
    """EasyNet's parameters from its architecture, layer by layer (conv k*k*in*out + out, BN 2 per channel)."""

    def conv(k, c_in, c_out):
        return k * k * c_in * c_out + c_out

    def conv_bn(k, c_in, c_out):
        return conv(k, c_in, c_out) + 2 * c_out

    def autoencoder(c_in):
        w = [cfg.base_width * m for m in (1, 2, 4, 8, 8)]
        total, prev = 0, c_in
        for width in w:  # encoder: double conv per block
            total += conv_bn(3, prev, width) + conv_bn(3, width, width)
            prev = width
        for c, c_next in ((w[4], w[2]), (w[2], w[1]), (w[1], w[0]), (w[0], w[0])):  # decoder stages
            total += conv_bn(3, c, c) + conv_bn(3, c, c) + conv_bn(3, c, c_next)
        return total + conv(3, w[0], c_in)

    def head(c_in):
        hw = cfg.head_width
        out_norm = 4 if cfg.head_out_norm else 0
        return conv_bn(1, c_in, hw) + conv_bn(1, hw, hw // 2) + conv(1, hw // 2, 2) + out_norm

    def se(c):
        hidden = max(c // cfg.se_reduction, 4)
        return (c * hidden + hidden + hidden * c + c) if cfg.attention else 0

    hw, n = cfg.head_width, cfg.layers
    merges = sum(conv_bn(1, c, hw) for c in [2 * cfg.base_width, 3 * cfg.base_width, 6 * cfg.base_width][:n])
    total = autoencoder(3) + merges + head(n * hw) + se(n * hw)
    if cfg.has_depth:
        total += autoencoder(cfg.depth_channels) + merges + head(2 * n * hw) + se(2 * n * hw)
    return total


@pytest.mark.parametrize("preset", ["lite", "base", "paper"])
def test_count_parameters_is_the_layer_by_layer_count(preset):
    cfg = MODEL_PRESETS[preset].replace(image_size=SIZE)
    assert count_parameters(EasyNet(cfg)) == hand_count(cfg) > 0


def test_count_parameters_matches_the_authors_model_and_counts_frozen_weights_but_no_buffers():
    """The paper preset against the authors' released 2-layer Fusion1 key list (tests/data): the sum of its weight
    and bias shapes, with every weight frozen (still parameters) and the BN running statistics left out."""
    import math
    from pathlib import Path

    rows = (Path(__file__).parent / "data" / "official_2layer_Fusion1_keys.tsv").read_text().splitlines()
    shapes = {key: eval(shape) for key, shape, _ in (row.split("\t") for row in rows)}  # "(128, 3, 3, 3)"
    expected = sum(math.prod(v) for k, v in shapes.items() if k.endswith((".weight", ".bias")))
    buffers = sum(math.prod(v) for k, v in shapes.items() if not k.endswith((".weight", ".bias")))
    model = EasyNet(MODEL_PRESETS["paper"].replace(image_size=SIZE))
    for p in model.parameters():
        p.requires_grad_(False)
    assert buffers > 0 and count_parameters(model) == expected
