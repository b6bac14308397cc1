"""File readers for RGB images, depth maps and ground-truth masks, with one-sentence errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tifffile
import yaml
from PIL import Image

from easynet.data.types import DepthMap
from easynet.errors import InputError
from easynet.settings import env_int

MIN_SIDE = 8  # pixels; anything smaller cannot be a real image
MAX_PIXELS = 40_000_000  # default upper limit, overridable with the EASYNET_MAX_PIXELS environment variable
MAX_PIXELS_ENV = "EASYNET_MAX_PIXELS"
MAX_VALUES_PER_PIXEL = 4  # channels a file may hold per pixel (RGBA); bounds all dimensions and pages together
RGB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEPTH_EXTENSIONS = (".tif", ".tiff", ".png", ".npy")
TIFF_EXTENSIONS = (".tif", ".tiff")
MM_PER_M = 1000.0
UINT16_MAX = 65535.0
INFO_DEPTH_NAME = "info_depth.yaml"  # Eyecandies: `<idx>_info_depth.yaml` beside `<idx>_depth.png`


def max_pixels() -> int:
    """The current pixel-count limit: EASYNET_MAX_PIXELS when set, else MAX_PIXELS."""
    return env_int(MAX_PIXELS_ENV, MAX_PIXELS, "a number of pixels")


def _check_file(path: Path, extensions: tuple[str, ...], what: str) -> None:
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist; give the path of an existing file")
    if path.suffix.lower() not in extensions:
        raise InputError(
            f"{what} file {path.name} has an unsupported extension; expected one of {', '.join(extensions)}"
        )
    if path.stat().st_size == 0:
        raise InputError(
            f"{what} file {path.name} is empty (0 bytes); expected a non-empty {', '.join(extensions)} file"
        )


def _check_size(height: int, width: int, name: str, what: str) -> None:
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{what} {name} is {width}x{height} pixels; each side must be at least {MIN_SIDE} pixels")
    if height * width > max_pixels():
        raise InputError(
            f"{what} {name} is {width}x{height} pixels, more than the limit of {max_pixels()} pixels; "
            f"downscale it or set {MAX_PIXELS_ENV} to raise the limit"
        )


def _check_values(shape: tuple[int, ...], height: int, width: int, name: str, what: str) -> None:
    """Refuses, before decoding, a file declaring more than MAX_VALUES_PER_PIXEL values per pixel over all its
    dimensions and pages: a header may declare a third dimension of thousands behind a small height x width."""
    total = int(np.prod([int(d) for d in shape], dtype=np.float64))
    if total > max(1, height * width) * MAX_VALUES_PER_PIXEL:
        dims = "x".join(str(int(d)) for d in shape)
        raise InputError(
            f"{what} file {name} declares {dims} values, {total // max(1, height * width)} per pixel; "
            f"expected one image of at most {MAX_VALUES_PER_PIXEL} channels (refused before decoding)"
        )


def _read_tiff(path: Path, what: str) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
            if len(shape) >= 2:
                h, w = (
                    (shape[1], shape[2])
                    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4
                    else (shape[0], shape[1])
                )
                _check_size(int(h), int(w), path.name, what)
                _check_values(tuple(shape), int(h), int(w), path.name, what)
            array = tif.asarray()
    except InputError:
        raise
    except Exception:  # tifffile raises many types for corrupt or truncated files
        raise InputError(
            f"{what} file {path.name} is not a readable TIFF: it is truncated, corrupt or not a TIFF at all"
        ) from None
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] > 4:  # planar (C, H, W)
        array = np.moveaxis(array, 0, -1)
    return array


def _read_pil(path: Path, what: str) -> np.ndarray:
    """Decodes a PNG/JPEG/BMP fully with Pillow (which rejects truncated files) into a numpy array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(image.height, image.width, path.name, what)
                image.load()
                if image.mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
                    image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
                return np.asarray(image)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(
            f"{what} file {path.name} has more than {max_pixels()} pixels; downscale it or set "
            f"{MAX_PIXELS_ENV} to raise the limit"
        ) from None
    except Exception:  # UnidentifiedImageError, OSError (truncated), SyntaxError...
        raise InputError(
            f"{what} file {path.name} is not a readable image: it is truncated, corrupt or not a "
            f"{path.suffix.lstrip('.').upper()} at all"
        ) from None


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(np.round(finite * scale), 0, 255).astype(np.uint8)
    # 16-bit (or wider integer) images: map 0..65535 to 0..255
    return np.clip(np.round(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def read_rgb(path: str | Path) -> np.ndarray:
    """Reads a colour or greyscale image as (H, W, 3) uint8 RGB.

    Greyscale is repeated to 3 channels, alpha is dropped and 16-bit images are scaled to 8 bits.
    """
    path = Path(path)
    _check_file(path, RGB_EXTENSIONS, "image")
    suffix = path.suffix.lower()
    array = _read_tiff(path, "image") if suffix in TIFF_EXTENSIONS else _read_pil(path, "image")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"image {path.name} has shape {array.shape}; expected HxW grey or HxWx3 colour pixels")
    return np.ascontiguousarray(_to_uint8(array[..., :3]))


def _finite_depth(z: np.ndarray, xyz: np.ndarray | None, name: str) -> DepthMap:
    """Turns NaN/inf/non-positive depth into missing (0); refuses maps without a valid point or with one
    constant value (a blank frame: no object and no table to fit)."""
    z = z.astype(np.float32, copy=True)
    if xyz is not None:
        xyz = xyz.astype(np.float32, copy=True)
        bad = ~np.isfinite(xyz).all(axis=2)
        xyz[bad] = 0.0
        z = xyz[..., 2].copy()
    bad = ~np.isfinite(z) | (z <= 0)
    z[bad] = 0.0
    if xyz is not None:
        xyz[bad] = 0.0
    valid = z[z > 0]
    if valid.size == 0:
        raise InputError(
            f"depth {name} has no valid point (every value is 0, NaN, inf or negative); expected "
            "positive distances in metres"
        )
    if valid.min() == valid.max():
        raise InputError(
            f"depth {name} has the same value ({float(valid[0]):.4g} m) everywhere, so it shows no "
            "object; give a real depth map, or no depth for an RGB-only check"
        )
    return DepthMap(z=z, xyz=xyz)


def check_depth(depth: DepthMap, name: str = "array") -> DepthMap:
    """The same checks as the file readers for a DepthMap built in memory (NaN/inf -> missing, refusals)."""
    return _finite_depth(depth.z, depth.xyz, name)


def _depth_from_array(array: np.ndarray, name: str, kind: str) -> DepthMap:
    if array.ndim == 3:
        if array.shape[2] != 3:
            n = array.shape[2]
            raise InputError(
                f"xyz {kind} {name} has {n} channel{'s' * (n != 1)}; expected 3 (x, y, z), or HxW "
                "without channels for a z map"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"xyz {kind} {name} holds {array.dtype} values; expected floats in metres")
        return _finite_depth(array[..., 2], array, name)
    if array.ndim == 2:
        if np.issubdtype(array.dtype, np.floating):
            return _finite_depth(array, None, name)
        if kind == "tiff" and array.dtype == np.uint16:  # integer depth tiffs are millimetres like PNGs
            return _finite_depth(array.astype(np.float32) / MM_PER_M, None, name)
        raise InputError(f"depth {kind} {name} holds {array.dtype} values; expected floats in metres")
    raise InputError(f"depth {kind} {name} has shape {array.shape}; expected HxW (z) or HxWx3 (x, y, z)")


def find_info_yaml(path: Path) -> Path | None:
    """Finds the Eyecandies `<idx>_info_depth.yaml` (or `info_depth.yaml`) beside a depth PNG."""
    stem = path.stem
    candidates = []
    if stem.endswith("depth"):
        candidates.append(path.with_name(stem[: -len("depth")] + INFO_DEPTH_NAME))
    candidates.append(path.with_name(INFO_DEPTH_NAME))
    return next((c for c in candidates if c.is_file()), None)


def _read_normalization(info_yaml: Path) -> tuple[float, float]:
    try:
        info = yaml.safe_load(Path(info_yaml).read_text())
        low, high = float(info["normalization"]["min"]), float(info["normalization"]["max"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        name = Path(info_yaml).name
        raise InputError(f"{name} must contain 'normalization: {{min, max}}' in metres") from None
    return low, high


def _depth_from_png(path: Path, info_yaml: str | Path | None) -> DepthMap:
    array = _read_pil(path, "depth")
    if array.dtype == np.uint8:
        raise InputError(
            f"depth PNG {path.name} is 8-bit, too coarse for depth; save it as 16-bit PNG "
            "(millimetres) or as float TIFF/NPY (metres)"
        )
    if array.ndim != 2:
        raise InputError(f"depth PNG {path.name} has shape {array.shape}; expected a single-channel 16-bit PNG")
    info = Path(info_yaml) if info_yaml is not None else find_info_yaml(path)
    values = array.astype(np.float32)
    if info is None:
        return _finite_depth(values / MM_PER_M, None, path.name)
    low, high = _read_normalization(info)
    return _finite_depth(values / UINT16_MAX * (high - low) + low, None, path.name)


def read_depth(path: str | Path, info_yaml: str | Path | None = None) -> DepthMap:
    """Reads a depth map or an organised point cloud.

    Supported: `.tiff/.tif` xyz (H, W, 3) float32 metres (MVTec 3D-AD; zeros = missing) or 2-D float z in
    metres; `.png` 16-bit, decoded with an Eyecandies `info_depth.yaml` (given or found beside the file)
    as `png / 65535 * (max - min) + min` metres, else read as millimetres (0 = missing); `.npy` float
    (H, W) z or (H, W, 3) xyz in metres. NaN and inf become missing (0).
    """
    path = Path(path)
    _check_file(path, DEPTH_EXTENSIONS, "depth")
    suffix = path.suffix.lower()
    if suffix in TIFF_EXTENSIONS:
        return _depth_from_array(_read_tiff(path, "depth"), path.name, "tiff")
    if suffix == ".png":
        return _depth_from_png(path, info_yaml)
    shape, dtype = npy_header(path)
    if len(shape) not in (2, 3):
        raise InputError(f"depth npy {path.name} has shape {shape}; expected HxW (z) or HxWx3 (x, y, z)")
    _check_size(int(shape[0]), int(shape[1]), path.name, "depth")
    _check_values(shape, int(shape[0]), int(shape[1]), path.name, "depth")
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"depth npy {path.name} holds {dtype} values; expected floats in metres")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise InputError(
            f"depth file {path.name} is not a readable .npy array: it is truncated, corrupt or holds "
            "Python objects (never loaded)"
        ) from None
    return _depth_from_array(array, path.name, "npy")


def npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy file from its header alone (numpy.lib.format; no data is read or unpickled)."""
    path = Path(path)
    unreadable = (
        f"depth file {path.name} is not a readable .npy array: it is truncated, corrupt or holds Python "
        "objects (never loaded)"
    )
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError, EOFError, SyntaxError):
        raise InputError(unreadable) from None
    if dtype.hasobject:
        raise InputError(unreadable)
    return tuple(int(d) for d in shape), dtype


def read_mask(path: str | Path) -> np.ndarray:
    """Reads a ground-truth mask as (H, W) bool (any value > 0 is anomalous, e.g. MVTec's 253/254/255)."""
    path = Path(path)
    _check_file(path, RGB_EXTENSIONS, "mask")
    array = _read_tiff(path, "mask") if path.suffix.lower() in TIFF_EXTENSIONS else _read_pil(path, "mask")
    if array.ndim == 3:
        array = array[..., :3].max(axis=2) if array.shape[2] >= 3 else array[..., 0]
    if array.ndim != 2:
        raise InputError(f"mask {path.name} has shape {array.shape}; expected a greyscale HxW image")
    return array > 0


def check_same_size(rgb: np.ndarray | tuple[int, int], depth: DepthMap | np.ndarray | tuple[int, int]) -> None:
    """Raises InputError unless the RGB image and the depth map (arrays, or (H, W) read from headers) have the same
    height and width."""
    depth = depth.z if isinstance(depth, DepthMap) else depth
    dh, dw = depth if isinstance(depth, tuple) else depth.shape[:2]
    rh, rw = rgb if isinstance(rgb, tuple) else rgb.shape[:2]
    if (rh, rw) != (dh, dw):
        raise InputError(f"RGB is {rw}x{rh} but depth is {dw}x{dh}; they must be pixel-aligned and of the same size")


def image_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of an RGB image file read from its header only (no decoding)."""
    path = Path(path)
    _check_file(path, RGB_EXTENSIONS, "image")
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            planar = len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4
            return (int(shape[1]), int(shape[2])) if planar else (int(shape[0]), int(shape[1]))
        with Image.open(path) as image:
            return image.height, image.width
    except Exception:  # header readers raise many types for corrupt files (the same sentences as the readers')
        kind = "TIFF" if path.suffix.lower() in TIFF_EXTENSIONS else "image"
        raise InputError(
            f"image file {path.name} is not a readable {kind}: it is truncated, corrupt or not a "
            f"{path.suffix.lstrip('.').upper()} at all"
        ) from None


def depth_shape(path: str | Path) -> tuple[int, int]:
    """(H, W) of a depth file read from its header only (no decoding)."""
    path = Path(path)
    _check_file(path, DEPTH_EXTENSIONS, "depth")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_EXTENSIONS:
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            planar = len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4
            return (int(shape[1]), int(shape[2])) if planar else (int(shape[0]), int(shape[1]))
        if suffix == ".npy":
            shape, _ = npy_header(path)
            return int(shape[0]), int(shape[1])
        with Image.open(path) as image:
            return image.height, image.width
    except Exception:  # header readers raise many types for corrupt files (the same sentences as the readers')
        kind = {".npy": ".npy array"}.get(suffix, "TIFF" if suffix in TIFF_EXTENSIONS else "image")
        raise InputError(
            f"depth file {path.name} is not a readable {kind}: it is truncated, corrupt or not a "
            f"{path.suffix.lstrip('.').upper()} at all"
        ) from None
