"""Geometry: table-plane removal, the model's depth input, resizing and a preprocessing cache.

Plane removal follows the community recipe (3D-ADS/BTF, reused by M3DM and EasyNet): RANSAC on the valid
points of the border strips, then everything within `threshold` of the plane is background. The largest
DBSCAN cluster is replaced by the largest 8-connected component on the image grid (same effect, ms not s).
Missing points (z = 0: dark, specular or shadowed surfaces) would cut that component: a 1-pixel seam of them
across an object dropped a third of it. So missing points near object points (`gap_bridge`: 2 % of the long
side, 16 px at 800x800) count as bridges while labelling, so gaps of missing points up to twice that wide are
crossed, and only measured object points end up in the foreground. Valid table points never bridge, so
debris that measured table separates from the object stays out.
Measured by `benchmarks/plane_removal.py` on generated 800x800 xyz scans (tilted table + box + blob, noise) on a
2-core x86-64 CPU: `remove_table` 0.02-0.04 s (median of 5; plus about 1.3 s once for importing open3d); with a
1-px seam, a specular hole + 25-px band, or 20 % dropouts it keeps 99 % of the object's measured points and
takes 0.1 % of the table (the old component rule kept 48 % across the seam, 87 % across the band).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from scipy import ndimage

from easynet.atomic import atomic_write
from easynet.data.io import depth_shape, read_depth
from easynet.data.preprocess import OBJECT_MARGIN, OBJECT_MIN_SIDE, Frame
from easynet.data.types import DepthMap
from easynet.errors import InputError

BORDER = 10  # pixels of each image side used to fit the table plane
PLANE_DISTANCE = 0.004  # RANSAC inlier distance, metres
PLANE_ITERATIONS = 1000
RANSAC_N = 3  # minimal sample; the community uses 50, which only lowers the chance of an outlier-free draw
TABLE_THRESHOLD = 0.005  # metres above the plane below which a point is table
MIN_PLANE_POINTS = 3
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
GAP_BRIDGE = 0.02  # of the long side (at least MIN_GAP_BRIDGE px): missing points this close to object points
MIN_GAP_BRIDGE = 2  # connect it while labelling; 16 px at 800x800, so gaps up to 32 px wide are crossed
DEPTH_SCALE_PERCENTILE = 99  # "metric" depth: heights are divided by this percentile of training object heights
DEPTH_SCALE_IMAGES = 64  # training images (evenly spaced) that the scale is fitted on
CACHE_ENV = "EASYNET_CACHE"
CACHE_VERSION = 2  # bump when the preprocessing changes


def _import_open3d():
    """Imports open3d lazily; its wheel needs libusb loaded first on some systems."""
    try:
        import ctypes

        import libusb_package

        ctypes.CDLL(str(libusb_package.get_library_path()))
    except (ImportError, OSError, TypeError):
        pass
    import open3d

    return open3d


@dataclass
class Geometry:
    """Result of plane removal.

    Attributes:
        height: (H, W) float32 metres above the table plane, 0 for background and missing points.
        foreground: (H, W) bool object pixels.
        plane: (4,) float64 (a, b, c, d) with unit normal; a*x + b*y + c*z + d > 0 on the camera side.
    """

    height: np.ndarray
    foreground: np.ndarray
    plane: np.ndarray


def pseudo_xyz(z: np.ndarray) -> np.ndarray:
    """Builds an (H, W, 3) point cloud from z alone, assuming a pinhole camera with focal = max(H, W) px
    and the principal point at the image centre.

    The true focal length is unknown for plain depth maps. Any focal gives a linear transform
    diag(k, k, 1) of the real cloud, so a real plane stays a plane (the fit is exact) and heights above
    a table facing the camera stay in metres; only strongly tilted tables get slightly scaled heights.
    """
    h, w = z.shape
    focal = float(max(h, w))
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (u - (w - 1) / 2.0) * z / focal
    y = (v - (h - 1) / 2.0) * z / focal
    return np.stack([x, y, z], axis=2).astype(np.float32)


def border_mask(shape: tuple[int, int], border: int = BORDER) -> np.ndarray:
    """(H, W) bool: the `border`-pixel strips along the four sides."""
    mask = np.zeros(shape, dtype=bool)
    b = max(1, min(border, shape[0] // 2, shape[1] // 2))
    mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = True, True, True, True
    return mask


def fit_table_plane(
    xyz: np.ndarray,
    valid: np.ndarray,
    border: int = BORDER,
    distance: float = PLANE_DISTANCE,
    iterations: int = PLANE_ITERATIONS,
    seed: int = 0,
) -> np.ndarray:
    """Fits the table plane with open3d RANSAC on the valid points of the border strips.

    Falls back to all valid points when the border has fewer than 3. Returns (a, b, c, d) with a unit
    normal, signed so that the camera (the origin) lies on the positive side.
    """
    points = xyz[border_mask(valid.shape, border) & valid]
    if len(points) < MIN_PLANE_POINTS:
        points = xyz[valid]
    if len(points) < MIN_PLANE_POINTS:
        raise InputError(f"depth has {len(points)} valid points; at least {MIN_PLANE_POINTS} are needed")
    o3d = _import_open3d()
    o3d.utility.random.seed(seed)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    plane, _ = cloud.segment_plane(
        distance_threshold=distance, ransac_n=min(RANSAC_N, len(points)), num_iterations=iterations
    )
    plane = np.asarray(plane, dtype=np.float64)
    norm = np.linalg.norm(plane[:3])
    if not np.isfinite(norm) or norm == 0:
        raise InputError("could not fit a table plane to the border of the depth map")
    plane = plane / norm
    return -plane if plane[3] < 0 else plane


def gap_bridge(shape: tuple[int, int]) -> int:
    """Pixels within which missing points join an object while labelling: 2 % of the long side, at least 2."""
    return max(MIN_GAP_BRIDGE, round(GAP_BRIDGE * max(shape)))


def largest_component(mask: np.ndarray, missing: np.ndarray | None = None, bridge: int | None = None) -> np.ndarray:
    """Keeps the largest 8-connected component of a bool mask (empty stays empty).

    ``missing`` (H, W) bool marks unmeasured pixels: those within ``bridge`` pixels of the mask join it while
    labelling (default ``gap_bridge``), so seams, holes and dropouts of missing points do not cut an object.
    Components are ranked by their mask pixels only and the result holds mask pixels only.
    """
    if not mask.any():
        return mask.copy()
    joined, bridge = mask, gap_bridge(mask.shape) if bridge is None else bridge
    if missing is not None and bridge > 0 and missing.any():
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * bridge + 1, 2 * bridge + 1))
        near = cv2.dilate(mask.astype(np.uint8), disk) > 0
        joined = mask | (missing & near)
    labels, count = ndimage.label(joined, structure=EIGHT_CONNECTED)
    if count <= 1:
        return mask & (labels > 0)
    sizes = np.bincount(labels[mask], minlength=count + 1)
    sizes[0] = 0
    return mask & (labels == int(np.argmax(sizes)))


def remove_table(
    depth: DepthMap, threshold: float = TABLE_THRESHOLD, keep_largest: bool = True, seed: int = 0
) -> Geometry:
    """Separates the object from the table: height above the fitted plane and a foreground mask.

    Points more than `threshold` metres above the plane (towards the camera) are foreground. Depth maps
    without xyz use `pseudo_xyz`. A flat scene gives an empty foreground, not an error.
    """
    valid = depth.valid
    xyz = depth.xyz if depth.xyz is not None else pseudo_xyz(depth.z)
    plane = fit_table_plane(xyz, valid, seed=seed)
    height = (xyz @ plane[:3].astype(np.float32) + np.float32(plane[3])).astype(np.float32)
    foreground = valid & (height > threshold)
    if keep_largest:
        foreground = largest_component(foreground, ~valid)
    height = np.where(foreground, height, np.float32(0.0)).astype(np.float32)
    return Geometry(height=height, foreground=foreground, plane=plane)


def depth_input(geometry: Geometry) -> np.ndarray:
    """The "height" depth input: height / max foreground height, object in (0, 1], background 0."""
    if not geometry.foreground.any():
        return np.zeros_like(geometry.height, dtype=np.float32)
    top = float(geometry.height[geometry.foreground].max())
    return np.where(geometry.foreground, geometry.height / top, 0.0).astype(np.float32)


def encode_depth(depth: DepthMap, geometry: Geometry, encoding: str = "height", scale: float = 0.0) -> np.ndarray:
    """The model's (H, W) float32 depth input under a checkpoint's ``depth_encoding``; 0 off the object.

    * ``height``: height above the table / this image's highest object point (object in (0, 1]).
    * ``metric``: height above the table in metres / ``scale`` (one fixed scale per checkpoint, fitted on its
      training set), so a bump changes its own region only and millimetres mean the same in every image.
    * ``z_minmax``: the authors' input: Z of the object, 0 elsewhere, min-max normalised over the image and
      quantised to 8 bits (uint8 cast, i.e. rounded down).
    """
    if encoding == "height":
        return depth_input(geometry)
    if encoding == "metric":
        if not scale > 0:
            raise ValueError("the metric depth encoding needs depth_scale > 0 metres (fitted on the training set)")
        return (geometry.height / np.float32(scale)).astype(np.float32)  # height is 0 off the object
    if encoding == "z_minmax":
        z = np.where(geometry.foreground, depth.z, 0.0).astype(np.float32)
        low, high = float(z.min()), float(z.max())
        if high <= low:
            return np.zeros_like(z)
        return (np.floor((z - low) / (high - low) * 255.0) / 255.0).astype(np.float32)
    raise ValueError(f"unknown depth encoding {encoding!r}")


class DepthInput(NamedTuple):
    """A depth source prepared for the model (``prepare_depth``)."""

    depth: np.ndarray  # (S, S) float32 model depth input
    foreground: np.ndarray  # (S, S) bool object pixels
    background: np.ndarray  # (H, W) bool measured points off the object, at the source resolution
    frame: Frame | None = None  # the frame used: an "object" frame is fitted here, to the foreground


def prepare_depth(depth: DepthMap, frame: Frame | int, encoding: str = "height", scale: float = 0.0) -> DepthInput:
    """Plane removal + depth input (``encode_depth``), fitted to the frame (an int S: stretch to S x S)."""
    if isinstance(frame, int):
        frame = Frame.fit(depth.shape, frame, "stretch")
    return frame_depth(depth, remove_table(depth), frame, encoding, scale)


def frame_depth(
    depth: DepthMap, geometry: Geometry, frame: Frame, encoding: str = "height", scale: float = 0.0
) -> DepthInput:
    """The depth input of a scan whose table is already removed, fitted to the frame (``prepare_depth``); an
    "object" frame is refitted to this scan's foreground (``DepthInput.frame`` is the one used)."""
    metric = encoding == "metric"
    if metric and not scale > 0:
        raise ValueError("the metric depth encoding needs depth_scale > 0 metres (fitted on the training set)")
    if frame.mode == "object":
        frame = Frame.fit(frame.original, frame.size, "object", geometry.foreground)
    values = frame.scalar(encode_depth(depth, geometry, encoding, 1.0 if metric else scale))
    if metric:  # metres are resized, then scaled: the cache stores metres and gives the same numbers
        values = values / np.float32(scale)
    return DepthInput(values, frame.mask(geometry.foreground), depth.valid & ~geometry.foreground, frame)


def zero_background(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A copy of an (H, W, 3) image with the (H, W) ``background`` pixels set to 0 (the authors' RGB input)."""
    out = rgb.copy()
    out[background] = 0
    return out


def fit_depth_scale(heights: Iterable[np.ndarray]) -> float:
    """The "metric" depth scale: the DEPTH_SCALE_PERCENTILE-th percentile of the object heights (metres) of
    training images, each given as its (S, S) map of heights with 0 off the object."""
    values = [h[h > 0] for h in heights]
    values = np.concatenate(values) if values else np.zeros(0, np.float32)
    if values.size == 0:
        raise InputError("no object points in the training depth maps; the metric depth scale cannot be fitted")
    return float(np.percentile(values, DEPTH_SCALE_PERCENTILE))


def default_cache_dir() -> Path:
    """EASYNET_CACHE when set, else ~/.cache/easynet-3d."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "easynet-3d")


def _cache_key(path: Path, frame: Frame, info_yaml: Path | None, encoding: str) -> str:
    stat = path.stat()
    size = frame.size if frame.mode == "stretch" else [frame.size, frame.mode]  # stretch keys as before
    settings = {
        "path": str(path),
        "mtime_ns": stat.st_mtime_ns,
        "bytes": stat.st_size,
        "size": size,
        "encoding": encoding,
        "info_yaml": str(info_yaml) if info_yaml else None,
        "border": BORDER,
        "distance": PLANE_DISTANCE,
        "iterations": PLANE_ITERATIONS,
        "ransac_n": RANSAC_N,
        "threshold": TABLE_THRESHOLD,
        "bridge": [GAP_BRIDGE, MIN_GAP_BRIDGE],
        **({"object": [OBJECT_MARGIN, OBJECT_MIN_SIDE]} if frame.mode == "object" else {}),
        "version": CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def cached_prepare_depth(
    path: str | Path,
    frame: Frame | int,
    cache_dir: str | Path | None = None,
    info_yaml: str | Path | None = None,
    encoding: str = "height",
    scale: float = 0.0,
) -> DepthInput:
    """`prepare_depth(read_depth(path), frame, encoding, scale)` memoised as .npz under `cache_dir` (never in
    the data set). A "metric" entry holds metres, so the scale is applied on reading and is not in the key.

    The key covers the absolute path, modification time, file size and every preprocessing setting.
    """
    path = Path(path).resolve()
    info = Path(info_yaml).resolve() if info_yaml is not None else None
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if isinstance(frame, int):
        frame = Frame.fit(depth_shape(path), frame, "stretch")
    if encoding == "metric" and not scale > 0:
        raise ValueError("the metric depth encoding needs depth_scale > 0 metres (fitted on the training set)")
    unit = scale if encoding == "metric" else 1.0
    target = directory / f"{_cache_key(path, frame, info, encoding)}.npz"
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as cached:
                shape = tuple(int(n) for n in cached["shape"])
                background = np.unpackbits(cached["background"], count=shape[0] * shape[1]).reshape(shape) > 0
                used = frame
                if frame.mode == "object":
                    top, left, side = (int(n) for n in cached["square"])
                    used = Frame.framed(frame.original, frame.size, (top, left), side)
                return DepthInput(cached["depth"] / np.float32(unit), cached["foreground"], background, used)
        except (OSError, KeyError, ValueError):
            pass  # unreadable or older cache entry: recompute and overwrite
    prepared = prepare_depth(read_depth(path, info), frame, encoding, 1.0 if encoding == "metric" else scale)
    arrays = {
        "depth": prepared.depth,
        "foreground": prepared.foreground,
        "background": np.packbits(prepared.background),
        "shape": np.array(prepared.background.shape),
        "square": np.array([*prepared.frame.origin, prepared.frame.padded]),
    }
    atomic_write(target, lambda handle: np.savez(handle, **arrays), durable=False)
    return prepared._replace(depth=prepared.depth / np.float32(unit))
