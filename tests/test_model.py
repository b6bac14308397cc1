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


def test_count_parameters_counts_frozen_weights_and_no_buffers():
    model = tiny("lite")
    by_hand = sum(p.numel() for _, p in model.named_parameters())
    buffers = sum(b.numel() for b in model.buffers())
    assert buffers > 0  # BN running statistics exist and must not be counted
    for p in model.parameters():
        p.requires_grad_(False)  # frozen weights are still the model's parameters
    assert count_parameters(model) == by_hand


def test_fused_rgb_keep_zero_makes_the_fused_head_blind_to_rgb():
    from test_fastpath import randomise

    model = randomise(tiny("lite"))  # random weights and BN statistics: every input shows in the output
    depth = torch.rand(2, 1, SIZE, SIZE)
    rgb_a, rgb_b = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        plain = model(rgb_a, depth)
        kept = model(rgb_a, depth, fused_rgb_keep=torch.ones(2))
        dropped_a = model(rgb_a, depth, fused_rgb_keep=torch.tensor([0.0, 1.0]))
        dropped_b = model(rgb_b, depth, fused_rgb_keep=torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(kept.logits_fused, plain.logits_fused)
    # image 0 dropped its RGB features: its fused map depends on depth alone; image 1 still sees its RGB
    torch.testing.assert_close(dropped_a.logits_fused[0], dropped_b.logits_fused[0])
    assert not torch.allclose(dropped_a.logits_fused[1], dropped_b.logits_fused[1])
    torch.testing.assert_close(dropped_a.logits_rgb, plain.logits_rgb)  # the RGB head is untouched


def test_fused_depth_view_is_the_fused_head_without_rgb_and_keeps_its_running_statistics():
    from test_fastpath import randomise

    model = randomise(tiny("lite"))
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        model.eval()
        viewed = model(rgb, depth, fused_depth_view=True)
        blind = model(rgb, depth, fused_rgb_keep=torch.zeros(2))
        assert model(rgb, depth).logits_fused_depth is None  # off unless asked
        torch.testing.assert_close(viewed.logits_fused_depth, blind.logits_fused)
        torch.testing.assert_close(viewed.logits_fused, model(rgb, depth).logits_fused)  # the main pass is unchanged
        model.train()
        stats = {k: v.clone() for k, v in model.fused_head.state_dict().items() if "running" in k}
        model(rgb, depth)
        plain = {k: v.clone() for k, v in model.fused_head.state_dict().items() if "running" in k}
        for k in stats:  # reload and repeat with the view: the running statistics move exactly as without it
            model.fused_head.state_dict()[k].copy_(stats[k])
        model(rgb, depth, fused_depth_view=True)
        after = {k: v for k, v in model.fused_head.state_dict().items() if "running" in k}
    assert stats and any(not torch.equal(stats[k], plain[k]) for k in stats)
    for k in stats:
        torch.testing.assert_close(after[k], plain[k])
    assert all(m.momentum == 0.1 for m in model.fused_head.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_depth_residual_feeds_input_minus_reconstruction_to_the_first_depth_merge():
    from test_fastpath import randomise

    model = randomise(tiny("lite", depth_residual=True)).eval()
    plain = tiny("lite")
    first = model.depth_merges[0][0]
    assert first.in_channels == plain.depth_merges[0][0].in_channels + model.cfg.depth_channels
    assert model.rgb_merges[0][0].in_channels == plain.rgb_merges[0][0].in_channels  # the RGB stream is untouched
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    seen = []
    first.register_forward_hook(lambda _m, args, _out: seen.append(args[0]) and None)
    with torch.no_grad():
        out = model(rgb, depth)
    residual = seen[0][:, -model.cfg.depth_channels :]
    torch.testing.assert_close(residual, depth - out.rec_depth)


def test_depth_residual_is_detached_so_the_reconstruction_only_learns_to_reconstruct():
    # the decoder's output conv makes the reconstruction and nothing else: only the residual could carry a
    # segmentation gradient into it, and it must not
    model = tiny("lite", depth_residual=True).train()
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    model(rgb, depth).logits_fused.sum().backward()
    assert model.depth.decoder.fin_out[0].weight.grad is None
    assert model.depth_merges[0][0].weight.grad.abs().sum() > 0


def test_fused_attention_off_holds_the_fused_scores_at_one_half():
    from test_fastpath import randomise

    model = randomise(tiny("lite")).eval()
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        learned = model(rgb, depth)
        off = model(rgb, depth, fused_attention_off=True)
        assert not torch.allclose(learned.attn_fused, torch.full_like(learned.attn_fused, 0.5))
        torch.testing.assert_close(off.attn_fused, torch.full_like(off.attn_fused, 0.5))
        torch.testing.assert_close(off.attn_rgb, learned.attn_rgb)  # the RGB head keeps its attention
        torch.testing.assert_close(off.logits_rgb, learned.logits_rgb)
        model.fused_se.forward = lambda pooled: torch.full_like(pooled, 0.5)  # what "off" must equal
        torch.testing.assert_close(off.logits_fused, model(rgb, depth).logits_fused)


def test_depth_head_is_a_linear_readout_of_the_depth_merges_that_inference_never_uses():
    from test_fastpath import randomise

    model = randomise(tiny("lite", depth_head=True)).eval()
    assert tiny("lite").depth_head is None
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    seen = []
    for merge in model.depth_merges:
        merge.register_forward_hook(lambda _m, _args, out: seen.append(out) and None)
    with torch.no_grad():
        out = model(rgb, depth)
        # by hand: the head's 1x1 weights split per scale, each scale up-sampled to the input, plus the bias
        w = model.depth_head.weight[:, :, 0, 0]
        parts = torch.split(w, [m.shape[1] for m in seen], dim=1)
        hand = (
            sum(
                torch.nn.functional.interpolate(torch.einsum("oc,bchw->bohw", p, m), size=(SIZE, SIZE), mode="bilinear")
                for p, m in zip(parts, seen)
            )
            + model.depth_head.bias[None, :, None, None]
        )
        torch.testing.assert_close(out.logits_depth, hand, rtol=1e-4, atol=1e-5)
        gated = {mode: model.forward_gated(rgb, depth, mode) for mode in ("close", "open", "control")}
        model.depth_head.weight.mul_(-50.0)  # any head weights: the gated maps must not change
        for mode, before in gated.items():
            torch.testing.assert_close(model.forward_gated(rgb, depth, mode).anomaly_map, before.anomaly_map)
    with pytest.raises(ValueError, match="depth_head needs"):
        MODEL_PRESETS["lite"].replace(modality="rgb", depth_head=True)


def test_depth_head_loss_reaches_the_depth_stream_and_not_the_rgb_stream():
    model = tiny("lite", depth_head=True).train()
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    mask = (torch.rand(2, 1, SIZE, SIZE) > 0.7).float()
    terms = EasyNetLoss(TrainConfig())(model(rgb, depth), rgb, depth, mask, mask_depth=mask)
    terms.focal_depth.backward()
    assert model.depth.encoder.block1[0].weight.grad.abs().sum() > 0
    assert model.depth_merges[0][0].weight.grad.abs().sum() > 0
    assert model.rgb.encoder.block1[0].weight.grad is None and model.fused_head.net[0].weight.grad is None
