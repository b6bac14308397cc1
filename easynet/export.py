"""ONNX export of EasyNet and an onnxruntime runner (onnxruntime is optional and imported lazily).

Two fixed graphs, chosen by ``heads``; both take ``rgb`` (B, 3, S, S) and, for RGB-D models, ``depth``
(B, 1, S, S) with a dynamic batch axis, and are built from the BN-folded model:

* ``both`` (gate open / control): ``prob_rgb``, ``prob_fused`` (B, S, S) anomaly probabilities of the two
  heads, ``entropy_rgb``, ``entropy_fused`` (B,) gate entropies, ``rec_rgb``, ``rec_depth``. The gate
  decision (H_fused > H_rgb + alpha) stays outside the graph, so alpha is a run-time value and one file
  serves both modes; unlike the torch path, control computes both heads for every image.
* ``rgb`` (gate close, RGB-only models): ``prob_rgb`` and ``rec_rgb`` from the RGB stream alone.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from easynet import gate as gate_lib
from easynet.errors import InputError
from easynet.fastpath import optimize_for_inference
from easynet.model import EasyNet, GatedOutput

OPSET = 17
HEADS = ("both", "rgb")


class _Graph(nn.Module):
    """The traced function: both heads' probabilities + entropies, or the RGB stream alone."""

    def __init__(self, model: EasyNet, heads: str) -> None:
        super().__init__()
        self.model, self.both = model, heads == "both" and model.cfg.has_depth

    def forward(self, rgb: Tensor, depth: Tensor | None = None) -> tuple[Tensor, ...]:
        model = self.model
        if not self.both:
            m_rgb, rec_rgb, _, _ = model._streams(rgb, None)
            pooled = model._pool(m_rgb)
            attn = model.rgb_se(pooled) if model.rgb_se is not None else None
            return torch.softmax(model.rgb_head(m_rgb, attn, rgb.shape[-2:]), dim=1)[:, 1], rec_rgb, pooled
        out = model(rgb, depth)
        h_rgb, h_fused = gate_lib.entropies(
            model.cfg.gate_scoring, out.pooled_rgb, out.pooled_fused, out.attn_rgb, out.attn_fused
        )
        prob_rgb = torch.softmax(out.logits_rgb, dim=1)[:, 1]  # (B, S, S)
        prob_fused = torch.softmax(out.logits_fused, dim=1)[:, 1]
        pooled_depth = out.pooled_fused[:, out.pooled_rgb.shape[1] :]
        return prob_rgb, prob_fused, h_rgb, h_fused, out.rec_rgb, out.rec_depth, out.pooled_rgb, pooled_depth


def _names(model: EasyNet, heads: str) -> tuple[list[str], list[str]]:
    if heads == "both" and model.cfg.has_depth:
        outputs = ["prob_rgb", "prob_fused", "entropy_rgb", "entropy_fused", "rec_rgb", "rec_depth"]
        return ["rgb", "depth"], [*outputs, "pooled_rgb", "pooled_depth"]
    return ["rgb"], ["prob_rgb", "rec_rgb", "pooled_rgb"]


def export_onnx(model: EasyNet, out: str | Path | io.BytesIO, heads: str = "both", image_size: int | None = None):
    """Write the ``heads`` graph of ``model`` (BN folded, fp32) to a path or a BytesIO; returns ``out``."""
    if heads not in HEADS:
        raise InputError(f"heads must be one of {', '.join(HEADS)}, got {heads!r}")
    size = image_size or model.cfg.image_size
    graph = _Graph(optimize_for_inference(model, channels_last=False).cpu(), heads).eval()
    inputs, outputs = _names(model, heads)
    args = (torch.rand(1, 3, size, size), torch.rand(1, 1, size, size))[: len(inputs)]
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            graph,
            args,
            out if isinstance(out, io.BytesIO) else str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
        )
    return out


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:  # an optional dependency
        raise InputError("the onnx backend needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from err
    return onnxruntime


class OnnxRunner:
    """onnxruntime sessions on the exported graphs: ``runner(rgb, depth, gate, alpha) -> GatedOutput``.

    Sessions are built lazily per graph ("rgb" for gate close, "both" otherwise) from in-memory exports,
    or from given files.
    """

    backend = "onnx"

    def __init__(
        self,
        device: torch.device,
        has_depth: bool,
        sources: dict[str, bytes | str | Path] | None = None,
        model: EasyNet | None = None,
    ) -> None:
        ort = _onnxruntime()
        self.device, self.has_depth, self._model = device, has_depth, model
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._ort, self._providers, self._sources, self._sessions = ort, providers, dict(sources or {}), {}

    @classmethod
    def from_model(cls, model: EasyNet, device: torch.device) -> OnnxRunner:
        """Export the graphs of ``model`` in memory when first needed."""
        return cls(device, model.cfg.has_depth, model=model)

    def _session(self, heads: str):
        if heads not in self._sessions:
            if heads not in self._sources:
                if self._model is None:
                    raise InputError(f"no ONNX graph for heads={heads!r} was given")
                self._sources[heads] = export_onnx(self._model, io.BytesIO(), heads).getvalue()
            source = self._sources.pop(heads)
            options = self._ort.SessionOptions()
            options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sessions[heads] = self._ort.InferenceSession(
                source if isinstance(source, bytes) else str(source), options, providers=self._providers
            )
        return self._sessions[heads]

    def __call__(self, rgb: Tensor, depth: Tensor | None, gate: str, alpha: float) -> GatedOutput:
        if gate not in (*gate_lib.MODES, gate_lib.BOTH_HEADS):
            raise ValueError(f"gate mode must be one of {gate_lib.MODES}, got {gate!r}")
        batch = rgb.shape[0]
        feed = {"rgb": _numpy(rgb)}
        nan = torch.full((batch,), float("nan"))
        if gate == "close" or depth is None or not self.has_depth:
            prob, rec, pooled = (torch.from_numpy(o) for o in self._session("rgb").run(None, feed))
            used = gate_lib.use_fused("close", nan, nan)
            return GatedOutput(prob, used, nan, nan, rec, None, pooled_rgb=pooled)
        feed["depth"] = _numpy(depth)
        outs = [torch.from_numpy(o) for o in self._session("both").run(None, feed)]
        prob_rgb, prob_fused, h_rgb, h_fused, rec_rgb, rec_depth, pooled_rgb, pooled_depth = outs
        pooled = {"pooled_rgb": pooled_rgb, "pooled_depth": pooled_depth}
        if gate == gate_lib.BOTH_HEADS:
            used = gate_lib.use_fused("open", h_rgb, h_fused)
            return GatedOutput(prob_fused, used, h_rgb, h_fused, rec_rgb, rec_depth, prob_rgb, **pooled)
        if gate == "open":
            h_rgb, h_fused = nan, nan
        inclusive = self._model is not None and self._model.cfg.score_rule == "official"
        used = gate_lib.use_fused(gate, h_rgb, h_fused, alpha, inclusive=inclusive)
        prob = gate_lib.select(gate, prob_rgb, prob_fused, used)
        return GatedOutput(prob, used, h_rgb, h_fused, rec_rgb, rec_depth, **pooled)


def _numpy(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().float().cpu().numpy())
