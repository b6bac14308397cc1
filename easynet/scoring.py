"""From anomaly maps to image scores: the position-wise normalisation of a head's map, the image score (max of the
mean-filtered map), the pixels that count (letterbox padding left out) and the calibrated display scale.

Image score = max of the anomaly map after a mean filter of IMAGE_FILTER_AT_256 px at 256x256 (DRAEM's 21x21 rule,
scaled with the image size; padding is not counted, so borders are not lowered). A checkpoint with
``score_rule="official"`` counts the zero padding, as the authors' ``avg_pool2d`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_FILTER_AT_256 = 21


def image_filter_size(image_size: int) -> int:
    """Odd mean-filter size for the image score: 21 at 256 px, scaled with the image size."""
    k = int(round(IMAGE_FILTER_AT_256 * image_size / 256))
    return k if k % 2 else k + 1


def image_scores(
    maps: torch.Tensor, image_size: int, valid: torch.Tensor | None = None, include_pad: bool = False
) -> torch.Tensor:
    """(B, H, W) anomaly maps -> (B,) max of the mean-filtered map; ``valid`` (B, H, W) bool leaves letterbox
    padding out (it is set to 0 before filtering); ``include_pad`` counts the filter's zero padding (authors)."""
    k = image_filter_size(image_size)
    maps = maps.float() if valid is None else maps.float() * valid.to(maps.device)
    pooled = F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=include_pad)
    return pooled.flatten(1).max(dim=1).values


def position_normalise(prob: torch.Tensor, head: Any) -> torch.Tensor:
    """(B, S, S) anomaly probabilities -> the head's score maps: (p - norm_mean) / norm_scale per position when
    its calibration holds a position norm (checkpoint.HeadCalibration), else p unchanged."""
    if head is None or not head.normalised:
        return prob
    mean, scale = head.norm_mean.to(prob.device, torch.float32), head.norm_scale.to(prob.device, torch.float32)
    return (prob.float() - mean) / scale


def valid_masks(items: Any) -> torch.Tensor | None:
    """(B, S, S) bool of the image pixels of items whose ``frame`` pads (letterbox, object), or None when none does."""
    frames = [getattr(item, "frame", None) for item in items]
    if not any(f is not None and f.pads for f in frames):
        return None
    size = items[0].rgb.shape[0]
    return torch.from_numpy(np.stack([f.valid if f is not None else np.ones((size, size), bool) for f in frames]))


def heatmap_scale(prob: np.ndarray, head: Any, clip: bool = True) -> np.ndarray:
    """Map probabilities to the calibrated display scale (same scale for every image): the head's clean
    noise floor -> 0, its typical anomaly peak -> 1. ``clip=False`` keeps the order of all values (metrics)."""
    span = max(head.pixel_high - head.pixel_low, 1e-6)
    scaled = (prob - head.pixel_low) / span
    return (np.clip(scaled, 0.0, 1.0) if clip else scaled).astype(np.float32)
