"""Training losses: SSIM + L2 on RGB, L2 on depth, focal loss on both segmentation heads (paper Eq. 2, 4, 5)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import Tensor, nn

from easynet.config import TrainConfig
from easynet.model import EasyNetOutput

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
FOCAL_SMOOTH = 1e-5  # the authors' label smoothing / log guard


class LossTerms(NamedTuple):
    """Named loss terms; ``total`` is the weighted sum that is back-propagated."""

    total: Tensor
    ssim_rgb: Tensor
    l2_rgb: Tensor
    l2_depth: Tensor
    focal_rgb: Tensor
    focal_fused: Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self._asdict().items()}


def ssim_loss(rec: Tensor, target: Tensor) -> Tensor:
    """1 - mean SSIM (window 11, sigma 1.5, data range 1), via pytorch-msssim."""
    return 1.0 - ssim(
        rec.float(), target.float(), data_range=1.0, win_size=SSIM_WINDOW, win_sigma=SSIM_SIGMA, size_average=True
    )


def focal_loss(logits: Tensor, mask: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal loss on 2-class logits (B, 2, H, W) against a binary mask (B, 1, H, W), mean over pixels.

    loss = -(1 - p_t)^gamma * log(p_t), with p_t the softmax probability of the true class (alpha_t = 1).
    """
    prob = torch.softmax(logits.float(), dim=1)
    target = mask.float().clamp(FOCAL_SMOOTH, 1.0 - FOCAL_SMOOTH)
    p_t = prob[:, 1:2] * target + prob[:, 0:1] * (1.0 - target) + FOCAL_SMOOTH
    return (-((1.0 - p_t) ** gamma) * torch.log(p_t)).mean()


class EasyNetLoss(nn.Module):
    """Sums the named terms with the weights of a TrainConfig (all 1 in the paper)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(
        self, out: EasyNetOutput, rgb: Tensor, depth: Tensor | None, mask: Tensor, mask_rgb: Tensor | None = None
    ) -> LossTerms:
        """Args: clean targets ``rgb`` (B,3,H,W), ``depth`` (B,1,H,W) or None, the anomaly ``mask`` (B,1,H,W)
        for the fused head, ``mask_rgb`` for the RGB head (the part visible in RGB; defaults to ``mask``)."""
        c = self.cfg
        zero = rgb.new_zeros(())
        mask_rgb = mask if mask_rgb is None else mask_rgb
        ssim_rgb = ssim_loss(out.rec_rgb, rgb)
        l2_rgb = F.mse_loss(out.rec_rgb.float(), rgb.float())
        l2_depth = zero
        if out.rec_depth is not None and depth is not None:
            l2_depth = F.mse_loss(out.rec_depth.float(), depth.float().expand_as(out.rec_depth))
        focal_rgb = focal_loss(out.logits_rgb, mask_rgb, c.focal_gamma)
        focal_fused = focal_loss(out.logits_fused, mask, c.focal_gamma) if out.logits_fused is not None else zero
        total = (
            c.weight_ssim * ssim_rgb
            + c.weight_l2_rgb * l2_rgb
            + c.weight_l2_depth * l2_depth
            + c.weight_focal * (focal_rgb + focal_fused)
        )
        return LossTerms(total, ssim_rgb, l2_rgb, l2_depth, focal_rgb, focal_fused)
