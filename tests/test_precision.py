"""Inference precision: bf16 where the device has it natively, fp32 otherwise with one line saying so."""

from __future__ import annotations

import pytest
import torch

import easynet.runtime as runtime
from easynet.checkpoint import load_checkpoint
from easynet.cli import main
from easynet.errors import InputError
from easynet.fastpath import TorchRunner
from easynet.predict import Predictor

CPU = torch.device("cpu")
# bf16 keeps 8 bits of mantissa: maps in [0, 1] agree to a few 1e-3 through a dozen conv layers
MAP_TOLERANCE = 0.02


def _no_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "fma"})


def test_resolve_precision(monkeypatch):
    _no_bf16(monkeypatch)
    assert runtime.resolve_precision("fp32", CPU) == ("fp32", None)
    assert runtime.resolve_precision("auto", CPU) == ("fp32", None)
    used, note = runtime.resolve_precision("bf16", CPU)
    assert used == "fp32" and "no native bf16" in note and "fp32" in note
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert runtime.resolve_precision("bf16", CPU) == ("bf16", None)
    assert runtime.resolve_precision("auto", CPU) == ("fp32", None)  # bf16 is opt-in
    assert runtime.resolve_precision("auto", torch.device("cuda")) == ("fp32", None)  # on GPUs too
    with pytest.raises(InputError, match="precision must be one of"):
        runtime.resolve_precision("fp8", CPU)


def test_predict_bf16_on_a_cpu_without_it_falls_back_with_one_line(monkeypatch, capsys, tiny_checkpoint, tiny_tree):
    _no_bf16(monkeypatch)
    rgb = tiny_tree / "toy/test/hole/rgb/000.png"
    code = main(
        ["predict", "--checkpoint", str(tiny_checkpoint), "--rgb", str(rgb), "--device", "cpu", "--precision", "bf16"]
    )
    out, err = capsys.readouterr()
    assert code in (0, 3, 4) and "score" in out
    assert err.strip().splitlines() == [
        "note: bf16 was asked for but this CPU (no avx512_bf16 or AMX) has no native bf16, so inference runs in fp32"
    ]
    predictor = Predictor.from_checkpoint(tiny_checkpoint, "cpu", precision="bf16")
    assert predictor.precision == "fp32" and predictor.runner.runner.autocast is False


def test_bf16_and_fp32_maps_agree(tiny_checkpoint):
    """Runs bf16 even where it is emulated (slow but exact to bf16 rounding), on a trained tiny model."""
    model = load_checkpoint(tiny_checkpoint).build_model()
    gen = torch.Generator().manual_seed(0)
    rgb, depth = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 1, 32, 32, generator=gen)
    fp32 = TorchRunner(model, CPU, precision="fp32")(rgb, depth, "open", 0.0)
    bf16 = TorchRunner(model, CPU, precision="bf16")(rgb, depth, "open", 0.0)
    assert bf16.rec_rgb.dtype == torch.bfloat16  # autocast was on
    assert bf16.anomaly_map.dtype == torch.float32  # probabilities and scores stay fp32
    torch.testing.assert_close(bf16.anomaly_map, fp32.anomaly_map, atol=MAP_TOLERANCE, rtol=0)
    torch.testing.assert_close(bf16.rec_rgb.float(), fp32.rec_rgb, atol=MAP_TOLERANCE, rtol=0)
    assert not torch.equal(bf16.rec_rgb.float(), fp32.rec_rgb)
