"""Inference backends: the runner of one backend for a model, and which backend a Predictor uses.

A runner answers ``runner(rgb, depth, gate, alpha) -> GatedOutput`` (``easynet.fastpath.Runner``): ``optimized``,
``eager`` and ``compiled`` are torch (``easynet.fastpath``), ``onnx`` is onnxruntime (``easynet.export``).

``auto`` (the app's default) times the candidates of AUTO_CANDIDATES on this machine for this model at its image size
(batch 1, the gate the app uses most) and keeps the fastest whose anomaly maps match the fp32 ``optimized`` path
within AUTO_TOLERANCE; ``optimized`` whenever another is missing (onnxruntime not installed), fails or disagrees.
``compiled`` is left out of ``auto``: its first call compiles for about a minute per gate and shape.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from easynet.errors import InputError
from easynet.fastpath import Runner, TorchRunner
from easynet.gate import runner_mode
from easynet.model import EasyNet

BACKENDS = ("optimized", "eager", "onnx", "compiled")
AUTO = "auto"
AUTO_CANDIDATES = ("optimized", "onnx")
AUTO_TOLERANCE = 1e-4  # largest difference of an anomaly probability from the fp32 optimized path
AUTO_CALLS = 5  # timed calls per candidate, after one warm-up
log = logging.getLogger(__name__)


def make_runner(model: EasyNet, device: torch.device, backend: str = "optimized", precision: str = "fp32") -> Runner:
    """The runner of ``backend`` (one of BACKENDS) for ``model`` on ``device``; ``precision`` is a resolved one
    ("fp32" or "bf16", see runtime.resolve_precision; the ONNX backend is fp32)."""
    if backend == "onnx":
        from easynet.export import OnnxRunner

        return OnnxRunner.from_model(model, device)
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join((*BACKENDS, AUTO))}, got {backend!r}")
    return TorchRunner(
        model,
        device,
        optimized=backend in ("optimized", "compiled"),
        precision=precision,
        compiled=backend == "compiled",
    )


@dataclass
class Choice:
    """What ``auto`` chose and why: the backend, the runner, and each candidate's milliseconds (None: unusable)."""

    backend: str
    runner: Runner
    timings_ms: dict[str, float | None]
    note: str


def choose(model: EasyNet, device: torch.device, precision: str = "fp32", gate: str = "control") -> Choice:
    """The fastest candidate backend whose maps match the fp32 optimized path on random inputs (see module doc)."""
    size = model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, size, size, generator=gen)
    depth = torch.rand(1, 1, size, size, generator=gen) if model.cfg.has_depth else None
    mode = runner_mode(gate, model.cfg.gate_rule, depth is not None)
    reference = make_runner(model, device, "optimized", "fp32")(rgb, depth, mode, 0.0).anomaly_map.float()
    runners: dict[str, Runner] = {}
    timings: dict[str, float | None] = {}
    for name in AUTO_CANDIDATES:
        try:
            runner = make_runner(model, device, name, precision)
            out = runner(rgb, depth, mode, 0.0)  # warm-up (the ONNX export happens here)
            if float((out.anomaly_map.float() - reference).abs().max()) > AUTO_TOLERANCE:
                timings[name] = None
                log.warning("backend %s disagrees with the optimized fp32 path on this model; not used", name)
                continue
            start = time.perf_counter()
            for _ in range(AUTO_CALLS):
                runner(rgb, depth, mode, 0.0)
            timings[name] = (time.perf_counter() - start) / AUTO_CALLS * 1000
            runners[name] = runner
        except Exception as err:  # a missing optional dependency or a failing export: not a candidate
            timings[name] = None
            log.info("backend %s is not available here: %s", name, err)
    best = min(runners, key=lambda n: timings[n]) if runners else "optimized"
    runner = runners.get(best) or make_runner(model, device, "optimized", precision)
    shown = ", ".join(f"{n} {t:.1f} ms" if t is not None else f"{n} unusable" for n, t in timings.items())
    note = f"backend auto chose {best} ({shown} per {size} px image, gate {gate})"
    log.info("%s", note)
    return Choice(best, runner, timings, note)
