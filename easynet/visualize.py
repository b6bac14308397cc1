"""Pictures from predictions (numpy + OpenCV only): heat maps, overlays, depth previews, PNG writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from easynet.atomic import atomic_write_bytes

OVERLAY_ALPHA = 0.5
COLORMAP = cv2.COLORMAP_JET
THRESHOLD_LEVEL = 0.5  # the verdict scale: the head's noise floor -> 0, the image threshold -> 0.5, twice as high -> 1
COLOUR_BAR_LABELS = ((0.0, "noise floor"), (THRESHOLD_LEVEL, "threshold"), (1.0, "2x threshold"))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float (or uint8) image -> uint8."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 RGB with the jet colour map."""
    return cv2.applyColorMap(to_uint8(values), COLORMAP)[..., ::-1].copy()


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend a calibrated heat map (H, W) in [0, 1] over an RGB image; cold areas stay the photo."""
    base = to_uint8(rgb).astype(np.float32)
    if heat.shape != base.shape[:2]:
        heat = cv2.resize(heat, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = colorize(heat).astype(np.float32)
    weight = (alpha * np.clip(heat, 0.0, 1.0) ** 0.5)[..., None]
    return (base * (1 - weight) + colour * weight + 0.5).astype(np.uint8)


def verdict_scale(prob: np.ndarray, floor: float, threshold: float) -> np.ndarray:
    """Anomaly probabilities on the one scale every picture uses: `floor` (the head's clean noise floor) -> 0,
    `threshold` (the image threshold the verdict used) -> THRESHOLD_LEVEL, twice its height above the floor -> 1.

    The image score is the highest mean-filtered probability, so an NG image always shows colours at or above the
    middle of the bar and warm colours mean the same on every head, gate and sensitivity.
    """
    floor = floor if floor < threshold else threshold / 2  # a threshold at or below the floor: still a range
    scaled = (np.asarray(prob, np.float32) - floor) / max(threshold - floor, 1e-6) * THRESHOLD_LEVEL
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def with_colour_bar(picture: np.ndarray) -> np.ndarray:
    """`picture` with the heat-map colour bar below it: noise floor, threshold (middle) and 2x threshold."""
    w = picture.shape[1]
    scale = max(0.35, min(0.6, w / 900))
    bar_h, text_h = max(8, w // 40), int(26 * scale / 0.5)
    bar = np.repeat(colorize(np.linspace(0, 1, w, dtype=np.float32)[None, :]), bar_h, axis=0)
    strip = np.full((bar_h + text_h, w, 3), 255, np.uint8)
    strip[:bar_h] = bar
    for value, text in COLOUR_BAR_LABELS:
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = int(np.clip(value * (w - 1) - tw / 2, 2, max(2, w - tw - 2)))
        cv2.putText(strip, text, (x, bar_h + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 40), 1, cv2.LINE_AA)
    tick = int(THRESHOLD_LEVEL * (w - 1))
    strip[:bar_h, max(0, tick - 1) : tick + 1] = 0
    return np.concatenate([to_uint8(picture)[..., :3], strip], axis=0)


def depth_preview(depth: np.ndarray | None, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A viewable (H, W, 3) uint8 picture of a depth input or z map (0 = missing shown black)."""
    if depth is None:
        return None
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d != 0)
    out = np.zeros(d.shape, np.float32)
    if valid.any():
        lo, hi = np.percentile(d[valid], [1, 99])
        out = np.where(valid, (d - lo) / max(hi - lo, 1e-9), 0.0)
        out = np.where(valid, 0.15 + 0.85 * np.clip(out, 0, 1), 0.0)
    img = cv2.applyColorMap(to_uint8(out), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    img[~valid] = 0
    if size is not None:
        img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(img)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB (H, W, 3) or grey (H, W) uint8/16 image atomically."""
    path = Path(path)
    img = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise OSError(f"could not encode {path.name} as PNG")
    atomic_write_bytes(path, buf.tobytes())
    return path
