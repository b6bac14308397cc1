"""Inference backends: the runner of one backend for a model, and which backend a Predictor uses.

A runner answers ``runner(rgb, depth, gate, alpha) -> GatedOutput`` (``easynet.fastpath.Runner``): ``optimized``,
``eager`` and ``compiled`` are torch (``easynet.fastpath``), ``onnx`` is onnxruntime (``easynet.export``).
"""

from __future__ import annotations

import torch

from easynet.errors import InputError
from easynet.fastpath import Runner, TorchRunner
from easynet.model import EasyNet

BACKENDS = ("optimized", "eager", "onnx", "compiled")


def make_runner(model: EasyNet, device: torch.device, backend: str = "optimized", precision: str = "fp32") -> Runner:
    """The runner of ``backend`` (one of BACKENDS) for ``model`` on ``device``; ``precision`` is a resolved one
    ("fp32" or "bf16", see runtime.resolve_precision; the ONNX backend is fp32)."""
    if backend == "onnx":
        from easynet.export import OnnxRunner

        return OnnxRunner.from_model(model, device)
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return TorchRunner(
        model,
        device,
        optimized=backend in ("optimized", "compiled"),
        precision=precision,
        compiled=backend == "compiled",
    )
