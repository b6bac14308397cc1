"""Data set format detection and one front door, `open_dataset`, for every supported layout."""

from __future__ import annotations

from pathlib import Path

from easynet.data.base import DEFAULT_IMAGE_SIZE, PairedDataset, list_dirs
from easynet.data.eyecandies import SPLIT_DIRS, Eyecandies
from easynet.data.mvtec3d import MVTec3D
from easynet.data.pairs import PairFolder
from easynet.data.types import Split
from easynet.errors import InputError

FORMATS = ("mvtec3d", "eyecandies", "pairs")


def _is_mvtec3d_category(folder: Path) -> bool:
    return (
        (folder / "train" / "good" / "rgb").is_dir()
        or (folder / "test").is_dir()
        and any((d / "rgb").is_dir() for d in (folder / "test").iterdir() if d.is_dir())
    )


def _is_eyecandies_category(folder: Path) -> bool:
    return any((folder / name / "data").is_dir() for name in SPLIT_DIRS.values())


def detect_format(root: str | Path) -> str:
    """Returns "mvtec3d", "eyecandies" or "pairs" for a data set root (the folder holding the categories)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data set root {root} is not a folder")
    categories = [root / name for name in list_dirs(root)]
    if any(_is_mvtec3d_category(c) for c in categories):
        return "mvtec3d"
    if any(_is_eyecandies_category(c) for c in categories):
        return "eyecandies"
    return "pairs"


def open_dataset(
    root: str | Path,
    category: str | None = None,
    split: Split | str = Split.TEST,
    format: str | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    modality: str = "rgbd",
    **kw,
) -> PairedDataset:
    """Opens one category and split of a data set, detecting its format unless `format` is given.

    Extra keywords go to the loader (`cache_dir`, `resize`, the depth options; Eyecandies also `light`,
    `epoch`). A pair folder has no categories (`category` is ignored); its splits are split folders or a
    seeded split of its good pairs, with labelled defects in test only (`easynet.data.pairs`).
    """
    format = format or detect_format(root)
    if format not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "pairs":
        return PairFolder(root, image_size=image_size, modality=modality, split=split, **kw)
    if not category:
        raise InputError(f"a {format} data set needs a category; found: {', '.join(list_dirs(Path(root)))}")
    loader = MVTec3D if format == "mvtec3d" else Eyecandies
    return loader(root, category, split, image_size=image_size, modality=modality, **kw)
