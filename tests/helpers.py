"""Builders of small fake data set trees (MVTec 3D-AD, Eyecandies, pair folders) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import yaml
from PIL import Image

TABLE_DISTANCE = 0.6  # metres from the camera to the table centre
OBJECT_HEIGHT = 0.03  # metres; box height
DEFECT_VALUE = 254  # MVTec gt values are class ids, not 255


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def make_scene_xyz(
    size: int | tuple[int, int] = 64,
    tilt: float = 10.0,
    missing_fraction: float = 0.05,
    noise: float = 0.0003,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """An organised point cloud of a tilted table with a box and a blob on it.

    Returns ((H, W, 3) float32 xyz in metres, missing points exactly 0; (H, W) bool true object mask).
    """
    h, w = _size(size)
    rng = np.random.default_rng(seed)
    focal = 1.2 * max(h, w)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - w / 2) / focal, (v - h / 2) / focal, np.ones_like(u)], axis=2)
    angle = np.deg2rad(tilt)
    normal = np.array([0.0, np.sin(angle), -np.cos(angle)])  # unit normal pointing to the camera
    offset = TABLE_DISTANCE * np.cos(angle)  # plane: normal . p + offset = 0 passes through (0, 0, 0.6)
    table = rays * (-offset / (rays @ normal))[..., None]
    height = np.zeros((h, w))
    height[h // 4 : h // 2, w // 4 : w // 2] = OBJECT_HEIGHT  # box
    yy, xx = (v - 0.55 * h) / (0.12 * h), (u - 0.55 * w) / (0.12 * w)
    height = np.maximum(height, 0.02 * np.exp(-(xx**2 + yy**2)) * (xx**2 + yy**2 < 2.5))  # blob
    xyz = table + height[..., None] * normal + rng.normal(0, noise, (h, w, 1)) * normal
    missing = rng.random((h, w)) < missing_fraction
    xyz[missing] = 0.0
    return xyz.astype(np.float32), (height > 0.005) & ~missing


GAP_KINDS = ("seam", "hole", "dropout")


def with_gaps(xyz: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """A copy of a scan with missing points across its object (placed for `make_scene_xyz`'s box and blob):
    "seam" = a 1-px line each way, "hole" = a specular disk + a band of 1/32 of the side, "dropout" = 20 %
    of the points missing at random."""
    xyz = xyz.copy()
    h, w = xyz.shape[:2]
    if kind == "seam":
        xyz[:, int(0.4 * w)] = 0.0
        xyz[int(0.45 * h), :] = 0.0
    elif kind == "hole":
        yy, xx = np.mgrid[0:h, 0:w]
        xyz[(yy - 0.4 * h) ** 2 + (xx - 0.4 * w) ** 2 < (0.06 * h) ** 2] = 0.0
        xyz[int(0.3 * h) : int(0.3 * h) + max(2, h // 32)] = 0.0
    elif kind == "dropout":
        xyz[np.random.default_rng(seed).random((h, w)) < 0.2] = 0.0
    else:
        raise ValueError(f"kind must be one of {GAP_KINDS}")
    return xyz


def _rgb(size: tuple[int, int], seed: int, brightness: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(40, 200, (*size, 3)) * brightness, 0, 255).astype(np.uint8)


def _defect_mask(size: tuple[int, int], value: int = DEFECT_VALUE) -> np.ndarray:
    h, w = size
    mask = np.zeros(size, dtype=np.uint8)
    mask[h // 3 : h // 3 + max(2, h // 8), w // 3 : w // 3 + max(2, w // 8)] = value
    return mask


def make_mvtec3d_tree(
    root: Path,
    category: str = "toy",
    size: int | tuple[int, int] = 64,
    with_xyz: bool = True,
    tilt: float = 10.0,
    missing_fraction: float = 0.05,
    n_train: int = 2,
    n_val: int = 1,
    test: dict[str, int] | None = None,
) -> Path:
    """Writes ROOT/<category>/{train,validation}/good/{rgb,xyz} and test/<defect>/{rgb,xyz,gt}.

    Defect gt masks hold the value 254 (as real MVTec class ids); good gt masks are all 0.
    """
    hw = _size(size)
    test = {"good": 1, "hole": 2} if test is None else test
    folders = [("train", "good", n_train), ("validation", "good", n_val)]
    folders += [("test", defect, count) for defect, count in test.items()]
    seed = 0
    for split, defect, count in folders:
        base = Path(root) / category / split / defect
        for i in range(count):
            seed += 1
            (base / "rgb").mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(hw, seed)).save(base / "rgb" / f"{i:03d}.png")
            if with_xyz:
                (base / "xyz").mkdir(parents=True, exist_ok=True)
                xyz, _ = make_scene_xyz(hw, tilt, missing_fraction, seed=seed)
                tifffile.imwrite(base / "xyz" / f"{i:03d}.tiff", xyz, photometric="rgb")
            if split == "test":
                (base / "gt").mkdir(parents=True, exist_ok=True)
                gt = np.zeros(hw, np.uint8) if defect == "good" else _defect_mask(hw)
                Image.fromarray(gt).save(base / "gt" / f"{i:03d}.png")
    return Path(root) / category


def depth_png_with_yaml(z: np.ndarray, low: float, high: float) -> tuple[np.ndarray, dict]:
    """Encodes metric z as Eyecandies does: 16-bit png = (z - min) / (max - min) * 65535."""
    png = np.round((np.clip(z, low, high) - low) / (high - low) * 65535).astype(np.uint16)
    return png, {"normalization": {"min": float(low), "max": float(high)}}


def make_eyecandies_tree(
    root: Path,
    category: str = "CandyCane",
    size: int = 64,
    n_train: int = 3,
    n_val: int = 1,
    n_test_good: int = 1,
    n_test_bad: int = 1,
) -> Path:
    """Writes ROOT/<Category>/{train,val,test_public}/data/<idx>_{image_0..5,depth,info_depth,mask}.

    Light k has brightness (k + 1) / 6 so tests can tell which light a loader picked.
    """
    hw = _size(size)
    plan = [("train", n_train, 0), ("val", n_val, 0), ("test_public", n_test_good, n_test_bad)]
    for split, good, bad in plan:
        data = Path(root) / category / split / "data"
        data.mkdir(parents=True, exist_ok=True)
        width = len(str(max(good + bad - 1, 1)))
        for i in range(good + bad):
            idx = f"{i:0{width}d}"
            for light in range(6):
                rgb = np.full((*hw, 3), int(255 * (light + 1) / 6), np.uint8)
                Image.fromarray(rgb).save(data / f"{idx}_image_{light}.png")
            xyz, _ = make_scene_xyz(hw, tilt=0.0, missing_fraction=0.0, seed=i)
            png, info = depth_png_with_yaml(xyz[..., 2], 0.5, 0.7)
            Image.fromarray(png).save(data / f"{idx}_depth.png")
            (data / f"{idx}_info_depth.yaml").write_text(yaml.safe_dump(info))
            mask = _defect_mask(hw, 255) if i >= good else np.zeros(hw, np.uint8)
            Image.fromarray(mask).save(data / f"{idx}_mask.png")
    return Path(root) / category


def make_pair_folder(
    root: Path,
    size: int | tuple[int, int] = 64,
    n_good: int = 1,
    n_bad: int = 1,
    depth_format: str = "tiff",
    subfolders: bool = False,
) -> Path:
    """Writes NAME.png + NAME.tiff | NAME_depth.png | NAME.npy (+ NAME_mask.png for bad items), or the same
    stems under rgb/, depth/, mask/ when `subfolders`. Good items are named good_*, bad ones bad_*."""
    hw = _size(size)
    root = Path(root)
    for i in range(n_good + n_bad):
        name = f"good_{i}" if i < n_good else f"bad_{i}"
        rgb_dir, depth_dir, mask_dir = (
            (root / "rgb", root / "depth", root / "mask") if subfolders else (root, root, root)
        )
        for d in (rgb_dir, depth_dir, mask_dir):
            d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(hw, i)).save(rgb_dir / f"{name}.png")
        xyz, _ = make_scene_xyz(hw, seed=i)
        if depth_format == "tiff":
            tifffile.imwrite(depth_dir / f"{name}.tiff", xyz, photometric="rgb")
        elif depth_format == "npy":
            np.save(depth_dir / f"{name}.npy", xyz[..., 2])
        else:  # 16-bit millimetres
            mm = np.round(xyz[..., 2] * 1000).astype(np.uint16)
            Image.fromarray(mm).save(depth_dir / (f"{name}.png" if subfolders else f"{name}_depth.png"))
        if i >= n_good:
            mask_name = f"{name}.png" if subfolders else f"{name}_mask.png"
            Image.fromarray(_defect_mask(hw, 255)).save(mask_dir / mask_name)
    return root


def assert_same_prediction(a, b, tol: float) -> None:
    """Two backends' predictions of one image agree: the same head and map, or, where the `score` rule's two head
    scores tie to within ``tol`` (a barely trained test model), each backend used the head it scored higher."""
    scores = b.head_scores or {}
    if b.gate == "control" and len(scores) == 2 and abs(scores["rgb"] - scores["fused"]) <= tol:
        for p in (a, b):
            assert p.used == max(p.head_scores, key=p.head_scores.get)
        return
    assert abs(a.anomaly_map - b.anomaly_map).max() <= tol
    assert a.used == b.used and abs(a.score - b.score) <= tol
