"""Fast torch inference: BatchNorm folded into the convolutions, channels-last, inference mode, gated work only.

``optimize_for_inference`` returns an optimised *copy* of an EasyNet (same class, same forward passes) in
which every conv -> BN pair is one conv; the BN becomes an ``nn.Identity``. A runner wraps a model for one
backend and device and answers ``runner(rgb, depth, gate, alpha) -> GatedOutput``:

* ``eager``: the model as trained (fp32, NCHW), for reference;
* ``optimized``: the folded copy, channels-last (the Predictor's default); both torch backends run in bf16
  autocast when given precision "bf16" (runtime.resolve_precision: opt-in on every device);
* ``onnx``: onnxruntime on an exported graph (``easynet.export``; ``easynet.backends`` picks among them);
* ``compiled``: the optimized copy under ``torch.compile`` (inductor), opt-in: the first call of each gate
  mode and batch size compiles (about a minute for `lite` on 2 CPU cores), later calls are much faster
  (benchmarks/README.md), so it suits a long-running server, not a one-off command.
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from easynet.model import EasyNet, GatedOutput, SegmentationHead


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One conv equal to ``bn(conv(x))`` in eval mode: W' = W * g / s, b' = (b - mean) * g / s + beta
    (torch.nn.utils.fusion.fuse_conv_bn_eval; both modules must be in eval mode)."""
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, every Conv2d directly followed by a BatchNorm2d inside an nn.Sequential.

    The BN is replaced by nn.Identity so that indices (``SegmentationHead.net[0]`` / ``net[1:]``) keep
    their meaning: the head applies its first conv per scale with slices of the *folded* full weight and
    adds the folded bias once, which equals BN(conv(concat)) because BN is a per-output-channel affine map
    and bilinear up-sampling is linear. Returns the number of folded pairs.
    """
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                seq[i], seq[i + 1] = fold_conv_bn(conv, bn), nn.Identity()
                folded += 1
    return folded


class FastSegmentationHead(SegmentationHead):
    """The same head (same parameters) with a cheaper first layer at inference.

    The SE scores scale the input channels of a 1x1 conv, so they are folded into per-image weights
    (one batched matmul per scale) instead of multiplying full-resolution maps; the bias goes into the first
    scale's product and the up-sampled scales are added in place.
    """

    def forward(self, merges: list[Tensor], scores: Tensor | None, size: tuple[int, int]) -> Tensor:
        first: nn.Conv2d = self.net[0]
        widths = [m.shape[1] for m in merges]
        weights = torch.split(first.weight[:, :, 0, 0], widths, dim=1)  # (O, C_i) each
        scales = torch.split(scores, widths, dim=1) if scores is not None else [None] * len(merges)
        out = None
        for i, (m, w, s) in enumerate(zip(merges, weights, scales)):
            bias = first.bias if i == 0 else None
            if s is None:
                y = F.conv2d(m, w[:, :, None, None], bias)
            else:  # (B, h*w, C) @ (B, C, O): the 1x1 conv with the SE scores folded into each image's weights
                b, c, h, wd = m.shape
                x = m.permute(0, 2, 3, 1).reshape(b, h * wd, c)
                w_b = (w[None] * s[:, None, :].to(w.dtype)).transpose(1, 2)  # (B, C, O)
                y = torch.baddbmm(bias.expand(b, 1, -1), x, w_b) if bias is not None else torch.bmm(x, w_b)
                y = y.reshape(b, h, wd, -1).permute(0, 3, 1, 2)  # (B, O, h, w), channels-last strides
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out.add_(y)
        return self.net[1:](out)  # (B, 2, H, W)


def optimize_for_inference(model: EasyNet, channels_last: bool = True) -> EasyNet:
    """An eval-mode copy of ``model`` with BN folded, no gradients and (optionally) channels-last weights.

    Its heads are FastSegmentationHead (same parameters, SE scores folded into the 1x1 weights).
    """
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    for module in fast.modules():
        if type(module) is SegmentationHead:
            module.__class__ = FastSegmentationHead
    fast.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


class Runner(Protocol):
    """A model on a device behind one backend: (B,3,S,S) rgb, (B,1,S,S) depth or None -> GatedOutput."""

    backend: str
    device: torch.device

    def __call__(self, rgb: Tensor, depth: Tensor | None, gate: str, alpha: float) -> GatedOutput: ...


class TorchRunner:
    """Runs ``forward_gated`` in inference mode; the optimized variant adds channels-last / bf16 autocast."""

    def __init__(
        self,
        model: EasyNet,
        device: torch.device,
        optimized: bool = True,
        precision: str = "fp32",
        compiled: bool = False,
    ) -> None:
        self.device, self.backend, self.precision = device, "optimized" if optimized else "eager", precision
        model = model.to(device).eval()
        # channels-last helps oneDNN on CPU and the tensor cores on CUDA
        self.channels_last = optimized
        self.model = optimize_for_inference(model, self.channels_last) if optimized else model
        self.autocast = precision == "bf16"  # softmax, entropies and scores stay fp32 (forward_gated casts)
        self._forward = self.model.forward_gated
        if compiled:  # one graph per gate mode and input shape, compiled on first use
            self.backend, self._forward = "compiled", torch.compile(self.model.forward_gated, dynamic=False)

    def _layout(self, x: Tensor | None) -> Tensor | None:
        if x is None:
            return None
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, rgb: Tensor, depth: Tensor | None, gate: str, alpha: float) -> GatedOutput:
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
            return self._forward(self._layout(rgb), self._layout(depth), gate, alpha)
