"""How typical an input is for a model: a Gaussian over the globally pooled merge features (those its gate already
pools) of the model's training images and their synthetic anomalies, one per stream (RGB, depth).

A model trained on one part scores every picture, also a photo of another part, and calls it OK or NG without a
word. The reference says when a picture does not look like what the model was trained on. Per stream, the distance
is the Mahalanobis distance to that Gaussian (shrunk covariance, Ledoit-Wolf), root-mean-square per dimension; the
stream's limit is LIMIT_FACTOR x the largest distance among the validation images and their synthetic anomalies
(the calibration set: never test). ``typicality`` = the larger of the streams' distance / limit: above 1 the part
is atypical and the verdict is not trusted. How the rule was chosen and what it does on test: research/TYPICAL.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

STREAMS = ("rgb", "depth")
LIMIT_FACTOR = 2.0  # chosen on validation by the largest margin on both sides (research/TYPICAL.md)
MIN_LIMIT = 0.5  # a floor for a tiny validation set (typical distances are about 1)
LIMIT_RULE = (
    f"per stream, limit = max({MIN_LIMIT}, {LIMIT_FACTOR} x the largest distance among the validation images and "
    "their synthetic anomalies); distance = RMS Mahalanobis distance of the pooled merge features to the training "
    "images and their synthetic anomalies; typicality = the larger of the streams' distance / limit"
)


@dataclass
class StreamReference:
    """A Gaussian over one stream's pooled features: mean (D,) and precision (D, D), float64 tensors, and the limit
    on the distance to it."""

    mean: torch.Tensor
    precision: torch.Tensor
    limit: float = float("inf")

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) pooled features -> (N,) or scalar RMS Mahalanobis distances."""
        x = np.atleast_2d(np.asarray(features, np.float64)) - self.mean.numpy()
        d2 = np.einsum("nd,de,ne->n", x, self.precision.numpy(), x) / x.shape[1]
        out = np.sqrt(np.maximum(d2, 0.0))
        return out if np.ndim(features) == 2 else float(out[0])

    @classmethod
    def fit(cls, features: np.ndarray) -> StreamReference:
        """The Gaussian of (N, D) features, covariance shrunk by Ledoit-Wolf (N may be smaller than D)."""
        from sklearn.covariance import LedoitWolf

        x = np.asarray(features, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError("a typical-part reference needs at least two images")
        lw = LedoitWolf().fit(x)
        return cls(torch.from_numpy(lw.location_), torch.from_numpy(lw.precision_))


@dataclass
class TypicalReference:
    """Per-stream Gaussians with their limits; the depth stream counts when both it and the input have depth."""

    rgb: StreamReference
    depth: StreamReference | None = None
    rule: str = LIMIT_RULE

    def typicality(self, pooled_rgb: np.ndarray, pooled_depth: np.ndarray | None = None) -> Any:
        """The larger of the streams' distance / limit, for one image (vectors) or many ((N, D) arrays): above 1 the
        input does not look like the model's part."""
        t = self.rgb.distance(pooled_rgb) / self.rgb.limit
        if self.depth is not None and pooled_depth is not None:
            t = np.maximum(t, self.depth.distance(pooled_depth) / self.depth.limit)
        return t

    def summary(self) -> dict[str, Any]:
        """The limits and the rule, for `easynet info` and JSON."""
        limits = {name: getattr(self, name).limit for name in STREAMS if getattr(self, name) is not None}
        return {"limits": limits, "rule": self.rule}

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors (checkpoints load it with weights_only)."""
        out: dict[str, Any] = {"rule": self.rule}
        for name in STREAMS:
            stream = getattr(self, name)
            if stream is not None:
                out[name] = {
                    "mean": stream.mean.double(),
                    "precision": stream.precision.double(),
                    "limit": stream.limit,
                }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TypicalReference:
        streams = {name: StreamReference(**data[name]) for name in STREAMS if data.get(name) is not None}
        return cls(rule=str(data.get("rule", LIMIT_RULE)), **streams)

    def check(self) -> str | None:
        """What is wrong with a stored reference (shapes, non-finite values, a limit <= 0), or None."""
        for name in STREAMS:
            stream = getattr(self, name)
            if stream is None:
                continue
            mean, precision, limit = stream.mean, stream.precision, stream.limit
            if not isinstance(mean, torch.Tensor) or not isinstance(precision, torch.Tensor):
                return f"{name} stream is not a pair of tensors"
            if mean.ndim != 1 or tuple(precision.shape) != (mean.shape[0], mean.shape[0]):
                return f"{name} stream's mean and precision do not fit together"
            if not bool(torch.isfinite(mean).all()) or not bool(torch.isfinite(precision).all()):
                return f"{name} stream holds non-finite values"
            if not isinstance(limit, float) or not math.isfinite(limit) or limit <= 0:
                return f"{name} stream's limit is {limit!r}, expected a positive number"
        return None


def fit_reference(
    seen_rgb: np.ndarray, seen_depth: np.ndarray | None, held_rgb: np.ndarray, held_depth: np.ndarray | None
) -> TypicalReference:
    """Gaussians on the pooled features of ``seen`` images (training images and their synthetic anomalies), limits
    from ``held`` ones (validation images and theirs), per stream (``*_depth`` None for RGB-only models)."""
    streams = {}
    for name, seen, held in (("rgb", seen_rgb, held_rgb), ("depth", seen_depth, held_depth)):
        if seen is not None and held is not None:
            stream = StreamReference.fit(seen)
            stream.limit = fit_limit(stream.distance(held))
            streams[name] = stream
    return TypicalReference(**streams)


def fit_limit(held_distances: np.ndarray) -> float:
    """LIMIT_RULE on the distances of the held-out (validation) images."""
    largest = float(np.max(held_distances)) if len(held_distances) else 0.0
    return max(MIN_LIMIT, LIMIT_FACTOR * largest)
