"""The attention-based information-entropy gate: close (RGB head), open (fused head), control (entropy decides).

Two scorings of "information entropy", both per image:

* ``attention`` (the paper, Sec. 3.2.3): SE-block channel-attention scores of each head's input are turned
  into a distribution over channels (p_c = s_c / sum s), and its Shannon entropy is divided by log2(C) so that
  the RGB (C channels) and fused (2C channels) entropies share the [0, 1] scale.
* ``histogram`` (the authors' code): the globally pooled merge features are histogrammed into 256 bins on
  [0, 1] (values outside are dropped) and the entropy of that histogram is taken, in bits (at most 8). The
  authors flatten the whole batch; here each image gets its own entropy.

``use_fused`` is the one place where the gate decides: the model's gated pass, the ONNX runner, the Predictor and
the evaluator all call it. Under the paper's rule the gate opens (uses the fused RGB-D map) when
``H_fused > H_rgb + alpha`` (Formula 3; a checkpoint with ``score_rule="official"`` uses the authors' ``>=``);
under the ``score`` rule it opens where the fused head is the more alarmed one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

MODES = ("close", "open", "control")
BOTH_HEADS = "both"  # an internal mode of forward_gated and the runners: both heads' maps (the score rule)
HIST_BINS = 256
HIST_RANGE = (0.0, 1.0)
EPS = 1e-12  # the authors' log2 guard


def histogram_entropy(pooled: Tensor) -> Tensor:
    """Entropy in bits of a 256-bin histogram on [0, 1] of each row of ``pooled`` (B, C) -> (B,)."""
    lo, hi = HIST_RANGE
    x = pooled.float()
    inside = (x >= lo) & (x <= hi)
    bins = ((x - lo) / (hi - lo) * HIST_BINS).long().clamp(0, HIST_BINS - 1)  # x == hi goes to the last bin
    counts = torch.zeros(x.shape[0], HIST_BINS, device=x.device)
    counts.scatter_add_(1, bins, inside.float())
    total = counts.sum(dim=1, keepdim=True)
    p = counts / total.clamp_min(1.0)
    return -(p * torch.log2(p + EPS)).sum(dim=1)


def attention_entropy(scores: Tensor) -> Tensor:
    """Normalised Shannon entropy of channel-attention scores (B, C) in (0, 1] -> (B,) in [0, 1]."""
    s = scores.float().clamp_min(EPS)
    p = s / s.sum(dim=1, keepdim=True)
    return -(p * torch.log2(p)).sum(dim=1) / math.log2(scores.shape[1])


def entropies(
    scoring: str,
    pooled_rgb: Tensor,
    pooled_fused: Tensor,
    attn_rgb: Tensor | None,
    attn_fused: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(H_rgb, H_fused), each (B,), under the given scoring."""
    if scoring == "attention":
        if attn_rgb is None or attn_fused is None:
            raise ValueError("attention scoring needs a model built with attention=True")
        return attention_entropy(attn_rgb), attention_entropy(attn_fused)
    if scoring == "histogram":
        return histogram_entropy(pooled_rgb), histogram_entropy(pooled_fused)
    raise ValueError(f"unknown gate scoring {scoring!r}")


def use_fused(
    mode: str,
    entropy_rgb: Any,
    entropy_fused: Any,
    alpha: float = 0.0,
    *,
    rule: str = "entropy",
    inclusive: bool = False,
    ratio_rgb: Any = None,
    ratio_fused: Any = None,
) -> Any:
    """The gate's one decision: per image, True where the fused RGB-D map is used. Tensors or arrays in, the same
    kind out (shape of ``entropy_rgb``).

    ``close``: never; ``open``: always; ``control`` by ``rule``: "entropy" (the paper's Formula 3,
    H_fused > H_rgb + alpha; ``inclusive``: the authors' >=) or "score" (the head whose image score is the larger
    multiple of its calibrated threshold, ``ratio_*``; ties go to RGB).
    """
    if mode not in MODES:
        raise ValueError(f"gate mode must be one of {MODES}, got {mode!r}")
    if mode != "control":
        full = torch.full_like if isinstance(entropy_rgb, Tensor) else np.full_like
        return full(entropy_rgb, mode == "open", dtype=torch.bool if isinstance(entropy_rgb, Tensor) else bool)
    if rule == "score":
        if ratio_rgb is None or ratio_fused is None:
            raise ValueError("the score rule needs both heads' score / threshold ratios")
        return ratio_fused > ratio_rgb
    if rule != "entropy":
        raise ValueError(f"gate rule must be one of entropy, score, got {rule!r}")
    if inclusive:
        return entropy_fused >= entropy_rgb + alpha
    return entropy_fused > entropy_rgb + alpha


def runner_mode(gate: str, gate_rule: str, has_depth: bool) -> str:
    """The mode a runner is called with for a user's gate: control under the score rule needs both heads."""
    return BOTH_HEADS if gate == "control" and gate_rule == "score" and has_depth else gate


def select(mode: str, prob_rgb: Tensor, prob_fused: Tensor | None, used_fused: Tensor) -> Tensor:
    """Pick per image the RGB or fused anomaly map (B, H, W) for a gate mode, given the control decision."""
    if mode not in MODES:
        raise ValueError(f"gate mode must be one of {MODES}, got {mode!r}")
    if prob_fused is None or mode == "close":
        return prob_rgb
    if mode == "open":
        return prob_fused
    return torch.where(used_fused[:, None, None], prob_fused, prob_rgb)
