"""The `auto` backend: the fastest candidate whose maps agree with the fp32 optimized path, else `optimized`."""

from __future__ import annotations

import time

import pytest
import torch

from easynet import backends
from easynet.config import MODEL_PRESETS
from easynet.model import EasyNet

CPU = torch.device("cpu")


def _model() -> EasyNet:
    return EasyNet(MODEL_PRESETS["lite"].replace(image_size=32)).eval()


class _Wrapped:
    """A real runner made slower or wrong on purpose."""

    def __init__(self, runner, delay: float = 0.0, offset: float = 0.0) -> None:
        self.runner, self.delay, self.offset = runner, delay, offset

    def __call__(self, rgb, depth, gate, alpha):
        out = self.runner(rgb, depth, gate, alpha)
        time.sleep(self.delay)
        return out._replace(anomaly_map=out.anomaly_map + self.offset)


def _with(monkeypatch, **changes) -> None:
    real = backends.make_runner

    def make(model, device, backend="optimized", precision="fp32"):
        runner = real(model, device, "optimized", precision)
        delay, offset = changes.get(backend, (0.0, 0.0))
        return _Wrapped(runner, delay, offset)

    monkeypatch.setattr(backends, "make_runner", make)


def test_auto_keeps_the_faster_candidate_that_agrees(monkeypatch):
    _with(monkeypatch, optimized=(0.02, 0.0), onnx=(0.0, 0.0))  # onnx agrees and is faster here
    choice = backends.choose(_model(), CPU)
    assert choice.backend == "onnx" and choice.timings_ms["onnx"] < choice.timings_ms["optimized"]
    assert "auto chose onnx" in choice.note


def test_auto_never_picks_a_backend_that_disagrees(monkeypatch):
    _with(monkeypatch, optimized=(0.02, 0.0), onnx=(0.0, 0.01))  # faster, but its maps are off by 0.01
    choice = backends.choose(_model(), CPU)
    assert choice.backend == "optimized" and choice.timings_ms["onnx"] is None


def test_auto_falls_back_to_optimized_without_onnxruntime(monkeypatch):
    import easynet.export as export
    from easynet.errors import InputError

    def missing():
        raise InputError("the onnx backend needs onnxruntime")

    monkeypatch.setattr(export, "_onnxruntime", missing)
    choice = backends.choose(_model(), CPU)
    assert choice.backend == "optimized" and choice.timings_ms["onnx"] is None and "onnx unusable" in choice.note


def test_a_predictor_with_auto_says_what_it_chose(tiny_checkpoint):
    from easynet.predict import Predictor

    predictor = Predictor.from_checkpoint(tiny_checkpoint, "cpu", backend="auto")
    assert predictor.backend in backends.AUTO_CANDIDATES and predictor.backend in predictor.backend_note
    with pytest.raises(Exception, match="backend must be one of"):
        Predictor.from_checkpoint(tiny_checkpoint, "cpu", backend="tensorrt")
