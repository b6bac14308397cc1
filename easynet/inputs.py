"""The inference input: an RGB image and an optional depth source read, checked and prepared for a model (plane
removal, depth encoding, framing), exactly as its training loaders prepared them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from easynet.config import ModelConfig
from easynet.data.foreground import rgb_foreground
from easynet.data.geometry import frame_depth, pseudo_xyz, remove_table, zero_background
from easynet.data.io import check_depth, check_same_size, depth_shape, read_depth, read_rgb
from easynet.data.preprocess import Frame
from easynet.data.types import DepthMap
from easynet.errors import InputError


@dataclass
class ModelInput:
    """Preprocessed inputs at the model's resolution (S, S)."""

    rgb: np.ndarray  # (S, S, 3) float32 [0, 1], RGB
    depth: np.ndarray | None  # (S, S) float32 depth input
    foreground: np.ndarray | None  # (S, S) bool
    original_size: tuple[int, int]  # (H, W) of the uploaded image
    xyz: np.ndarray | None = None  # (H, W, 3) metres, for the 3D view (pseudo-xyz for plain depth maps)
    foreground_full: np.ndarray | None = None  # (H, W) bool at the original size
    frame: Frame | None = None  # where the image sits in the square; maps go back with frame.to_original
    framed_from: str | None = None  # "object" frames: "depth" (plane removal), "rgb" (no depth given) or None


def prepare_input(
    rgb: str | Path | np.ndarray, depth: str | Path | np.ndarray | DepthMap | None, cfg: ModelConfig
) -> ModelInput:
    """Read (when paths) and preprocess an RGB image and an optional depth source.

    ``depth`` may be a path (xyz .tiff, 16-bit .png, .npy), a DepthMap, an (H, W) z array in metres or an
    (H, W, 3) organised point cloud.
    """
    image = read_rgb(rgb) if isinstance(rgb, (str, Path)) else _check_rgb_array(rgb)
    frame = Frame.fit(image.shape[:2], cfg.image_size, cfg.resize)
    rgb_in = frame.image(image)
    if depth is None:
        framed_from = None
        if cfg.resize == "object" and cfg.has_depth:  # trained on depth-framed parts: frame the RGB object instead
            found = rgb_foreground(image)
            if found is not None:
                frame, framed_from = Frame.fit(image.shape[:2], cfg.image_size, "object", found), "rgb"
                rgb_in = frame.image(image)
        return ModelInput(rgb_in, None, None, image.shape[:2], frame=frame, framed_from=framed_from)
    if isinstance(depth, (str, Path)):  # from the header: a depth file of another size is refused undecoded
        check_same_size(image, depth_shape(depth))
    dmap = _to_depthmap(depth)
    check_same_size(image, dmap)
    geometry = remove_table(dmap)
    prepared = frame_depth(dmap, geometry, frame, cfg.depth_encoding, cfg.depth_scale)
    if prepared.frame != frame:  # "object": the frame follows the part that plane removal found
        frame = prepared.frame
        rgb_in = frame.image(image)
    if cfg.rgb_background == "zero":
        rgb_in = frame.image(zero_background(image, prepared.background))
    xyz = dmap.xyz if dmap.xyz is not None else pseudo_xyz(dmap.z)
    framed_from = "depth" if frame.mode == "object" else None
    return ModelInput(
        rgb_in, prepared.depth, prepared.foreground, image.shape[:2], xyz, geometry.foreground, frame, framed_from
    )


def _check_rgb_array(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputError(f"an RGB image must be HxWx3, got an array of shape {a.shape}")
    return a[..., :3]


def _to_depthmap(depth: str | Path | np.ndarray | DepthMap) -> DepthMap:
    if isinstance(depth, DepthMap):
        return depth
    if isinstance(depth, (str, Path)):
        return read_depth(depth)
    a = np.asarray(depth, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 3:
        return check_depth(DepthMap(z=np.ascontiguousarray(a[..., 2]), xyz=a))
    if a.ndim == 2:
        return check_depth(DepthMap(z=a))
    raise InputError(f"depth must be HxW (z) or HxWx3 (xyz), got an array of shape {a.shape}")


def read_xyz(path: str | Path) -> np.ndarray:
    """(H, W, 3) float32 organised points in metres from any depth file (a plain depth map gets pseudo x, y)."""
    dmap = read_depth(path)
    xyz = dmap.xyz if dmap.xyz is not None else pseudo_xyz(dmap.z)
    return np.ascontiguousarray(xyz, dtype=np.float32)
