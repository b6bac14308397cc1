"""How typical an input is for a model: a Gaussian over the globally pooled merge features of the model's own good
images (the features its gate already pools), one per stream (RGB, depth).

A model trained on one part scores every picture, also a photo of another part, and calls it OK or NG without a
word. The reference says when a picture does not look like what the model was trained on: its distance is the
Mahalanobis distance to the model's own good images (shrunk covariance, Ledoit-Wolf), root-mean-square per
dimension, so that about 1 is typical whatever the feature width. ``typicality`` = distance / the reference's
limit: above 1 the part is atypical and the verdict is not trusted. The limit is fitted on validation images only
(``fit_limit``, the rule in LIMIT_RULE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

STREAMS = ("rgb", "depth")
# a new picture is atypical when its distance exceeds LIMIT_FACTOR x the largest distance among the model's own
# clean validation images (never fewer than MIN_LIMIT): fitted on validation, never on test (research/TYPICAL.md)
LIMIT_FACTOR = 1.5
MIN_LIMIT = 2.0
LIMIT_RULE = (
    f"limit = max({MIN_LIMIT}, {LIMIT_FACTOR} x the largest distance of the model's own clean validation images); "
    "distance = RMS Mahalanobis distance of the pooled merge features to the model's clean training images"
)


@dataclass
class StreamReference:
    """A Gaussian over one stream's pooled features: mean (D,) and precision (D, D), float64 tensors."""

    mean: torch.Tensor
    precision: torch.Tensor

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
    """Per-stream Gaussians and the limit on their distance (the larger of the streams' distances counts)."""

    rgb: StreamReference
    depth: StreamReference | None = None
    limit: float = float("inf")
    rule: str = LIMIT_RULE

    def distance(self, pooled_rgb: np.ndarray, pooled_depth: np.ndarray | None = None) -> Any:
        """The distance of one image (vectors) or many ((N, D) arrays); the depth stream counts when both the
        reference and the input have it."""
        d = self.rgb.distance(pooled_rgb)
        if self.depth is not None and pooled_depth is not None:
            d = np.maximum(d, self.depth.distance(pooled_depth))
        return d

    def typicality(self, pooled_rgb: np.ndarray, pooled_depth: np.ndarray | None = None) -> Any:
        """distance / limit: above 1, the input does not look like the model's part."""
        return self.distance(pooled_rgb, pooled_depth) / self.limit

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors (checkpoints load it with weights_only)."""
        out: dict[str, Any] = {"limit": float(self.limit), "rule": self.rule}
        for name in STREAMS:
            stream = getattr(self, name)
            if stream is not None:
                out[name] = {"mean": stream.mean.double(), "precision": stream.precision.double()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TypicalReference:
        streams = {name: StreamReference(**data[name]) for name in STREAMS if data.get(name) is not None}
        return cls(limit=float(data["limit"]), rule=str(data.get("rule", LIMIT_RULE)), **streams)

    def check(self) -> str | None:
        """What is wrong with a stored reference (shapes, non-finite values, a limit <= 0), or None."""
        if not isinstance(self.limit, float) or not math.isfinite(self.limit) or self.limit <= 0:
            return f"limit is {self.limit!r}, expected a positive number"
        for name in STREAMS:
            stream = getattr(self, name)
            if stream is None:
                continue
            mean, precision = stream.mean, stream.precision
            if not isinstance(mean, torch.Tensor) or not isinstance(precision, torch.Tensor):
                return f"the {name} stream is not a pair of tensors"
            if mean.ndim != 1 or tuple(precision.shape) != (mean.shape[0], mean.shape[0]):
                return f"the {name} stream's mean and precision do not fit together"
            if not bool(torch.isfinite(mean).all()) or not bool(torch.isfinite(precision).all()):
                return f"the {name} stream holds non-finite values"
        return None


def fit_reference(
    train_rgb: np.ndarray, train_depth: np.ndarray | None, val_rgb: np.ndarray, val_depth: np.ndarray | None
) -> TypicalReference:
    """Gaussians on the clean training images' pooled features, the limit from the clean validation images."""
    reference = TypicalReference(
        StreamReference.fit(train_rgb), None if train_depth is None else StreamReference.fit(train_depth)
    )
    reference.limit = fit_limit(reference.distance(val_rgb, val_depth))
    return reference


def fit_limit(validation_distances: np.ndarray) -> float:
    """LIMIT_RULE on the distances of the model's own clean validation images."""
    largest = float(np.max(validation_distances)) if len(validation_distances) else 0.0
    return max(MIN_LIMIT, LIMIT_FACTOR * largest)
