"""Fast path: BN folding, the optimised copy and the Predictor's default backend equal the eager model."""

import copy

import pytest
import torch
from torch import nn

from easynet.backends import make_runner
from easynet.config import MODEL_PRESETS
from easynet.errors import InputError
from easynet.fastpath import fold_batchnorm, fold_conv_bn, optimize_for_inference
from easynet.model import EasyNet

SIZE = 32
TOL = 1e-4


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial BN statistics, so that folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 2 + 0.25)
            elif isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def tiny(preset: str, **kw) -> EasyNet:
    cfg = MODEL_PRESETS[preset].replace(image_size=SIZE, **kw)
    if preset == "paper":  # the authors' layout (histogram gate, BN on the logits), narrow
        cfg = cfg.replace(base_width=4, head_width=16)
    return randomise(EasyNet(cfg))


def test_fold_conv_bn_equals_conv_then_bn():
    conv, bn = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)
    randomise(nn.Sequential(conv, bn))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fold_conv_bn(conv, bn)(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_removes_every_bn():
    model = tiny("paper")
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fold_batchnorm(model) == n_bn
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("preset", ["paper", "lite"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_optimized_copy_equals_eager(preset, layers, channels_last):
    model = tiny(preset, layers=layers)
    fast = optimize_for_inference(model, channels_last=channels_last)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert isinstance(fast, EasyNet)
    rgb, depth = torch.rand(3, 3, SIZE, SIZE), torch.rand(3, 1, SIZE, SIZE)
    with torch.inference_mode():
        ref, out = model(rgb, depth), fast(rgb, depth)
        for a, b in zip(ref, out):
            if a is not None:
                assert (a - b).abs().max() <= TOL
        for gate in ("close", "open", "control"):
            a, b = model.forward_gated(rgb, depth, gate, 0.0), fast.forward_gated(rgb, depth, gate, 0.0)
            assert (a.anomaly_map - b.anomaly_map).abs().max() <= TOL
            assert torch.equal(a.used_fused, b.used_fused)
            assert (a.rec_rgb - b.rec_rgb).abs().max() <= TOL


def test_bn_statistics_matter():
    """Guard for the parity tests: with these statistics, dropping the BNs instead of folding them changes the map."""
    model = tiny("paper")
    dropped = copy.deepcopy(model)
    for seq in [m for m in dropped.modules() if isinstance(m, nn.Sequential)]:
        for i, m in enumerate(seq):
            if isinstance(m, nn.BatchNorm2d):
                seq[i] = nn.Identity()
    rgb, depth = torch.rand(1, 3, SIZE, SIZE), torch.rand(1, 1, SIZE, SIZE)
    with torch.inference_mode():
        a, b = model.forward_gated(rgb, depth, "open"), dropped.forward_gated(rgb, depth, "open")
    assert (a.anomaly_map - b.anomaly_map).abs().max() > 100 * TOL


@pytest.mark.parametrize("backend", ["eager", "optimized", "compiled"])
def test_runner_equals_forward_gated(backend):
    model = tiny("lite")
    runner = make_runner(model, torch.device("cpu"), backend)
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    with torch.inference_mode():
        ref = model.forward_gated(rgb, depth, "control", 0.01)
    out = runner(rgb, depth, "control", 0.01)
    assert runner.backend == backend
    assert (ref.anomaly_map - out.anomaly_map).abs().max() <= TOL
    assert torch.equal(ref.used_fused, out.used_fused)


@pytest.mark.parametrize("backend", ["eager", "optimized", "onnx"])
def test_both_heads_mode_returns_the_open_and_close_maps(backend):
    """The score rule's one pass: the fused map as `open` gives it and the RGB map as `close` gives it."""
    model = tiny("lite")
    runner = make_runner(model, torch.device("cpu"), backend)
    rgb, depth = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 1, SIZE, SIZE)
    both = runner(rgb, depth, "both", 0.0)
    tol = TOL if backend != "onnx" else 1e-4
    assert (both.anomaly_map - runner(rgb, depth, "open", 0.0).anomaly_map).abs().max() <= tol
    assert (both.anomaly_map_rgb - runner(rgb, depth, "close", 0.0).anomaly_map).abs().max() <= tol
    assert both.used_fused.all() and both.rec_depth is not None
    assert (both.anomaly_map - both.anomaly_map_rgb).abs().max() > tol  # two different heads
    control = runner(rgb, depth, "control", 0.0)  # and the entropies control would decide by
    torch.testing.assert_close(both.entropy_rgb, control.entropy_rgb, atol=1e-4, rtol=0)
    torch.testing.assert_close(both.entropy_fused, control.entropy_fused, atol=1e-4, rtol=0)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="backend"):
        make_runner(tiny("lite"), torch.device("cpu"), "tensorrt")


def test_predictor_default_backend_equals_eager(tiny_checkpoint, tiny_tree):
    from helpers import assert_same_prediction

    from easynet.predict import Predictor

    rgb = next((tiny_tree / "toy" / "test" / "hole" / "rgb").glob("*.png"))
    xyz = rgb.parent.parent / "xyz" / (rgb.stem + ".tiff")
    fast = Predictor.from_checkpoint(tiny_checkpoint, "cpu")
    eager = Predictor.from_checkpoint(tiny_checkpoint, "cpu", backend="eager")
    assert fast.backend == "optimized" and eager.backend == "eager"
    for gate in ("close", "open", "control"):
        assert_same_prediction(fast.predict(rgb, xyz, gate=gate), eager.predict(rgb, xyz, gate=gate), TOL)
