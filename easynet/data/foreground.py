"""Object foreground from the RGB image alone, for data without depth (the RGB-only track).

MVTec 3D-AD-style photos show one object on a uniform surface that fills the image border. The surface's
colour is modelled from the border strips (mean and covariance, as plane removal fits the table from the
border in 3D); pixels of the blurred image far from it in Mahalanobis distance are the object. Holes are
filled and the largest component is kept. Where that does not give a plausible object (under MIN_FRACTION or
over MAX_FRACTION of the image), None is returned and callers use the whole image.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

BORDER_FRACTION = 0.08  # of each side: the strips that show the surface
BLUR_FRACTION = 0.01  # Gaussian sigma as a fraction of the longer side (speckle and sensor noise)
DISTANCE = 4.0  # Mahalanobis distance from the surface colour above which a pixel is object
MIN_FRACTION, MAX_FRACTION = 0.02, 0.9
MAX_SIDE = 1024  # larger images are searched at this long side and the mask is scaled back (a 6000 px photo's blur
# took 29 s at full size; the mask only frames the part)


def rgb_foreground(rgb: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray | None:
    """(H, W, 3) float image in [0, 1] (or uint8) -> (H, W) bool object mask, or None when none is found.

    ``valid`` (H, W) bool limits the search to image pixels (letterbox padding excluded).
    """
    if valid is None:
        valid = np.ones(rgb.shape[:2], bool)
    factor = MAX_SIDE / max(rgb.shape[:2])
    if factor < 1:  # uint8 or float: shrunk before any float copy of the full image is made
        size = _scaled(rgb.shape, factor)
        small = cv2.resize(np.asarray(rgb), size, interpolation=cv2.INTER_AREA)
        small_valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        found = rgb_foreground(small, small_valid)
        if found is None:
            return None
        return cv2.resize(found.astype(np.uint8), rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    rows, cols = np.nonzero(valid)
    if len(rows) == 0:
        return None
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    image = rgb[top:bottom, left:right].astype(np.float32)
    if rgb.dtype == np.uint8:
        image /= 255.0
    h, w = image.shape[:2]
    sigma = max(1.0, BLUR_FRACTION * max(h, w))
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    b = max(1, int(round(BORDER_FRACTION * min(h, w))))
    strip = np.zeros((h, w), bool)
    strip[:b], strip[-b:], strip[:, :b], strip[:, -b:] = True, True, True, True
    surface = blurred[strip].reshape(-1, 3)
    mean = surface.mean(axis=0)
    cov = np.cov(surface, rowvar=False) + np.eye(3) * 1e-5
    diff = blurred.reshape(-1, 3) - mean
    distance = np.sqrt(np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff)).reshape(h, w)
    mask = distance > DISTANCE
    mask = ndimage.binary_closing(mask, iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    mask = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)) + 1)
    fraction = float(mask.mean())
    if not MIN_FRACTION <= fraction <= MAX_FRACTION:
        return None
    out = np.zeros(rgb.shape[:2], bool)
    out[top:bottom, left:right] = mask
    return out


def _scaled(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """(width, height) of a shape scaled by ``factor`` (cv2's order)."""
    return max(1, round(shape[1] * factor)), max(1, round(shape[0] * factor))
