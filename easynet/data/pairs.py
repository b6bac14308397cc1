"""A plain folder of RGB-D pairs, flat or with rgb/, depth/, mask/ sub-folders.

Flat: `NAME.png|jpg|bmp` (RGB) + `NAME.tiff|NAME.tif|NAME_depth.png|NAME.npy` (depth) + optional
`NAME_mask.png`. Sub-folders: `rgb/NAME.*`, `depth/NAME.*`, `mask/NAME.*` with matching stems. A pair
without a mask is good; with a mask it is anomalous when any mask pixel is > 0. A pair folder has no
splits: `open_dataset` returns the same samples for every split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easynet.data.base import DEFAULT_IMAGE_SIZE, GOOD, PairedDataset, Record, sorted_files
from easynet.data.io import read_mask
from easynet.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
DEPTH_SUFFIXES = (".tiff", ".tif", "_depth.png", ".npy")  # tried in this order after the stem
SUBFOLDER_DEPTH = (".tiff", ".tif", ".png", ".npy")
MASK_SUFFIX = "_mask"
ANOMALOUS = "anomalous"


def _first(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()), None)


def _flat_records(root: Path) -> list[Record]:
    records = []
    for rgb in sorted_files(root, IMAGE_EXTENSIONS):
        stem = rgb.stem
        if stem.endswith((MASK_SUFFIX, "_depth")):
            continue
        mask = _first(root, stem, tuple(f"{MASK_SUFFIX}{e}" for e in IMAGE_EXTENSIONS))
        records.append(_record(rgb, _first(root, stem, DEPTH_SUFFIXES), mask, stem))
    return records


def _subfolder_records(root: Path) -> list[Record]:
    records = []
    for rgb in sorted_files(root / "rgb", IMAGE_EXTENSIONS):
        mask = _first(root / "mask", rgb.stem, IMAGE_EXTENSIONS)
        records.append(_record(rgb, _first(root / "depth", rgb.stem, SUBFOLDER_DEPTH), mask, rgb.stem))
    return records


def _record(rgb: Path, depth: Path | None, mask: Path | None, name: str) -> Record:
    anomalous = mask is not None and bool(read_mask(mask).any())
    return Record(rgb=rgb, depth=depth, mask=mask if anomalous else None,
                  defect=ANOMALOUS if anomalous else GOOD, name=name)


class PairFolder(PairedDataset):
    """All pairs of one folder; pairs whose depth file is missing make the whole folder RGB-only."""

    def __init__(self, root: str | Path, image_size: int = DEFAULT_IMAGE_SIZE, modality: str = "rgbd",
                 cache_dir: str | Path | None = None, resize: str = "stretch", **depth_options: Any) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"pair folder {self.root} is not a folder")
        records = _subfolder_records(self.root) if (self.root / "rgb").is_dir() else _flat_records(self.root)
        if not records:
            raise InputError(f"{self.root} holds no RGB images (.png, .jpg, .bmp); expected NAME.png + "
                             "NAME.tiff pairs or rgb/ and depth/ sub-folders")
        super().__init__(records, image_size, modality, cache_dir, resize, **depth_options)
