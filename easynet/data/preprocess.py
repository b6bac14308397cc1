"""Fitting images into the model's square input and mapping results back: the one place that decides how an
(H, W) picture becomes (S, S), used by the loaders, the evaluator, calibration, the Predictor and the app.

Three modes, recorded in the checkpoint's ``ModelConfig.resize``:
* ``stretch``: resize both sides to S (the aspect ratio changes; what the synthetic world does).
* ``letterbox``: resize the long side to S, keep the aspect ratio and pad the short side with zeros
  (centred). Small defects keep their shape; the padding is never an anomaly and is left out of scores and
  pixel metrics through ``Frame.valid``.
* ``pad``: the authors' MVTec 3D-AD preprocessing (3D-ADS): round each side up to a multiple of PAD_MULTIPLE
  pixels, pad with zeros (centred) to a square of the larger one at the source resolution, then resize that
  square bilinearly to S. As in their evaluation, the padding stays in scores and pixel metrics.
* ``object``: frame the part, not the scene: a square around the depth foreground's bounding box (OBJECT_MARGIN
  of its side added on each side, at least OBJECT_MIN_SIDE of the image's long side) at the source resolution,
  resized to S, so that a small part gets as many input pixels as a large one and synthetic anomalies are
  sized to the part. Where the square leaves the image the padding is zero and is left out like letterbox
  padding; outside the square maps go back as 0. Without a foreground (no depth, or nothing found) the
  square is the whole image, centred (as letterbox). Not in the paper (research/RECIPE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from easynet.config import RESIZE_MODES

PAD_MULTIPLE = 100  # the authors round each side up to a multiple of 100 px before padding to a square
OBJECT_MARGIN = 0.15  # "object": context kept around the part's bounding box, a fraction of its longer side
OBJECT_MIN_SIDE = 0.25  # "object": the square is at least this fraction of the image's long side


@dataclass(frozen=True)
class Frame:
    """Where an (H, W) image sits inside the (S, S) model input.

    Attributes:
        size: S.
        original: (H, W) of the source image.
        top, left, height, width: the image's rectangle inside the square (the rest is padding).
        mode: "stretch", "letterbox", "pad" or "object".
        padded: "pad" and "object": side of the square at the source resolution (0 otherwise).
        origin: "object" only: (row, column) of the square's top-left corner in the source image (may be
            negative: the square may leave the image).
    """

    size: int
    original: tuple[int, int]
    top: int
    left: int
    height: int
    width: int
    mode: str = "stretch"
    padded: int = 0
    origin: tuple[int, int] = (0, 0)

    @classmethod
    def fit(cls, original: tuple[int, int], size: int, mode: str, foreground: np.ndarray | None = None) -> Frame:
        """The frame of an (H, W) image resized to S by ``mode``; "object" frames ``foreground`` (H, W) bool."""
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {mode!r}")
        h, w = int(original[0]), int(original[1])
        if mode == "object":
            return cls._object(h, w, size, foreground)
        if mode == "pad":
            side = max(math.ceil(h / PAD_MULTIPLE), math.ceil(w / PAD_MULTIPLE)) * PAD_MULTIPLE
            scale = size / side
            top, left = round((side - h) // 2 * scale), round((side - w) // 2 * scale)
            return cls(size, (h, w), top, left, max(1, round(h * scale)), max(1, round(w * scale)), mode, side)
        if mode == "stretch" or h == w:
            return cls(size, (h, w), 0, 0, size, size, mode)
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        return cls(size, (h, w), (size - nh) // 2, (size - nw) // 2, nh, nw, mode)

    @classmethod
    def _object(cls, h: int, w: int, size: int, foreground: np.ndarray | None) -> Frame:
        if foreground is not None and foreground.shape != (h, w):
            raise ValueError(f"the foreground is {foreground.shape}, the image {(h, w)}")
        if foreground is None or not foreground.any():
            side, centre = max(h, w), ((h - 1) / 2, (w - 1) / 2)
        else:
            rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
            extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
            side = max(round(extent * (1 + 2 * OBJECT_MARGIN)), round(OBJECT_MIN_SIDE * max(h, w)), 1)
            centre = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
        top, left = round(centre[0] - (side - 1) / 2), round(centre[1] - (side - 1) / 2)
        return cls.framed((h, w), size, (top, left), side)

    @classmethod
    def framed(cls, original: tuple[int, int], size: int, origin: tuple[int, int], side: int) -> Frame:
        """The "object" frame of the square of ``side`` source pixels at ``origin`` (row, column)."""
        (h, w), (top, left), side = original, (int(origin[0]), int(origin[1])), int(side)
        scale = size / side
        # the image's part of the square, in model pixels: the rest is padding
        y0, x0 = max(0, -top), max(0, -left)
        y1, x1 = min(side, h - top), min(side, w - left)
        vt, vl = round(y0 * scale), round(x0 * scale)
        vh, vw = max(1, round(y1 * scale) - vt), max(1, round(x1 * scale) - vl)
        return cls(size, (h, w), vt, vl, vh, vw, "object", side, (top, left))

    @property
    def pads(self) -> bool:
        """True when the square may hold padding that scores and pixel metrics leave out (letterbox, object)."""
        return self.mode in ("letterbox", "object")

    def _crop_square(self, values: np.ndarray) -> np.ndarray:
        """ "object" mode: the square of side ``padded`` at ``origin`` cut from the source, zero outside it."""
        h, w = self.original
        top, left, side = self.origin[0], self.origin[1], self.padded
        out = np.zeros((side, side, *values.shape[2:]), dtype=values.dtype)
        y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + side), min(w, left + side)
        out[y0 - top : y1 - top, x0 - left : x1 - left] = values[y0:y1, x0:x1]
        return out

    def _square(self, values: np.ndarray) -> np.ndarray:
        """ "pad" and "object": the source at the square's resolution, before resizing to S."""
        return self._crop_square(values) if self.mode == "object" else self._pad_square(values)

    @property
    def valid(self) -> np.ndarray:
        """(S, S) bool: True on image pixels, False on padding."""
        out = np.zeros((self.size, self.size), dtype=bool)
        out[self.top : self.top + self.height, self.left : self.left + self.width] = True
        return out

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices of the image rectangle inside the square."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def _place(self, resized: np.ndarray, fill: float | bool) -> np.ndarray:
        out = np.full((self.size, self.size, *resized.shape[2:]), fill, dtype=resized.dtype)
        out[self.slices] = resized
        return out

    def _pad_square(self, values: np.ndarray, fill: float | int = 0) -> np.ndarray:
        """ "pad" mode: the source image centred on a zero (``fill``) square of side ``padded``."""
        h, w = self.original
        top, left = (self.padded - h) // 2, (self.padded - w) // 2
        out = np.full((self.padded, self.padded, *values.shape[2:]), fill, dtype=values.dtype)
        out[top : top + h, left : left + w] = values
        return out

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """An RGB image (uint8 or float in [0, 1]) -> (S, S, 3) float32 in [0, 1]."""
        image = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
        if self.mode in ("pad", "object"):
            shrink = cv2.INTER_AREA if self.mode == "object" and self.padded > self.size else cv2.INTER_LINEAR
            square = cv2.resize(self._square(image), (self.size, self.size), interpolation=shrink)
            return np.clip(square, 0.0, 1.0).astype(np.float32)
        resized = cv2.resize(image, (self.width, self.height), interpolation=_shrink(image.shape, self))
        return self._place(np.clip(resized, 0.0, 1.0).astype(np.float32), 0.0)

    def scalar(self, values: np.ndarray) -> np.ndarray:
        """An (H, W) float map (depth input) -> (S, S) float32, bilinear, padding 0."""
        if self.mode in ("pad", "object"):
            square = self._square(values.astype(np.float32))
            return cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        resized = cv2.resize(values.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return self._place(resized.astype(np.float32), 0.0)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """An (H, W) bool mask -> (S, S) bool, nearest neighbour, padding False."""
        if self.mode in ("pad", "object"):
            square = self._square(mask.astype(np.uint8))
            return cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_NEAREST) > 0
        resized = cv2.resize(mask.astype(np.uint8), (self.width, self.height), interpolation=cv2.INTER_NEAREST)
        return self._place(resized > 0, False)

    def to_original(self, values: np.ndarray) -> np.ndarray:
        """An (S, S) map at model resolution -> (H, W) on the source image's pixels (bilinear)."""
        if self.mode == "object":
            return self._uncrop(values)
        if self.mode == "pad":
            h, w = self.original
            top, left = (self.padded - h) // 2, (self.padded - w) // 2
            square = cv2.resize(values.astype(np.float32), (self.padded, self.padded), interpolation=cv2.INTER_LINEAR)
            return np.ascontiguousarray(square[top : top + h, left : left + w])
        inner = np.ascontiguousarray(values[self.slices], dtype=np.float32)
        return cv2.resize(inner, (self.original[1], self.original[0]), interpolation=cv2.INTER_LINEAR)

    def _uncrop(self, values: np.ndarray) -> np.ndarray:
        """ "object" mode: an (S, S) map back onto the (H, W) source, 0 outside the framed square."""
        h, w = self.original
        top, left, side = self.origin[0], self.origin[1], self.padded
        square = cv2.resize(values.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
        out = np.zeros((h, w), dtype=np.float32)
        y0, x0, y1, x1 = max(0, top), max(0, left), min(h, top + side), min(w, left + side)
        out[y0:y1, x0:x1] = square[y0 - top : y1 - top, x0 - left : x1 - left]
        return out


def _shrink(shape: tuple[int, ...], frame: Frame) -> int:
    """Letterbox shrinks with INTER_AREA (keeps thin structures and small defects); stretch stays bilinear,
    the interpolation the shipped checkpoints were trained with."""
    shrinking = shape[0] > frame.height and shape[1] > frame.width
    return cv2.INTER_AREA if frame.mode == "letterbox" and shrinking else cv2.INTER_LINEAR
