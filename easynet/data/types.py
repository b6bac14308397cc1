"""Named data types shared by the readers, the loaders and the model code."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from easynet.data.preprocess import Frame


class Split(str, Enum):
    """A data set split; the value is the folder name used by MVTec 3D-AD."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


@dataclass
class DepthMap:
    """Raw depth as read from disk.

    Attributes:
        z: (H, W) float32 distance along the optical axis in metres, 0 where missing.
        xyz: (H, W, 3) float32 metres when the source is an organised point cloud, else None.
    """

    z: np.ndarray
    xyz: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        """(H, W) bool: points that were measured (z > 0 and finite)."""
        return np.isfinite(self.z) & (self.z > 0)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the map."""
        return (int(self.z.shape[0]), int(self.z.shape[1]))


@dataclass
class Sample:
    """What every loader returns, already resized to (S, S).

    Attributes:
        rgb: (S, S, 3) float32 in [0, 1], RGB order.
        depth: (S, S) float32 depth input (`geometry.encode_depth`) or None (RGB-only track).
        foreground: (S, S) bool object mask from plane removal, None without depth.
        mask: (S, S) bool ground truth (all False for good / train / validation).
        label: 0 good, 1 anomalous.
        defect: "good" or the defect folder name.
        name: unique name within the data set, e.g. "test/hole/003".
        frame: where the source image sits in the square (letterbox padding), None for a full square.
    """

    rgb: np.ndarray
    depth: np.ndarray | None
    foreground: np.ndarray | None
    mask: np.ndarray
    label: int
    defect: str
    name: str
    frame: Frame | None = None

    @property
    def region(self) -> np.ndarray | None:
        """(S, S) bool: where anomalies may be placed: the object (foreground) inside the image's frame."""
        valid = self.frame.valid if self.frame is not None and self.frame.pads else None
        if self.foreground is None:
            return valid
        return self.foreground if valid is None else self.foreground & valid
