"""MVTec 3D-AD loader: ROOT/<cat>/{train,validation}/good/{rgb,xyz}, ROOT/<cat>/test/<defect>/{rgb,xyz,gt}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easynet.data.base import DEFAULT_IMAGE_SIZE, GOOD, PairedDataset, Record, list_dirs, sorted_files
from easynet.data.io import RGB_EXTENSIONS
from easynet.data.types import Split
from easynet.errors import InputError

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")
RGB_DIR, XYZ_DIR, GT_DIR = "rgb", "xyz", "gt"
XYZ_EXTENSIONS = (".tiff", ".tif")


def _split_of(split: Split | str) -> Split:
    try:
        return Split(split)
    except ValueError:
        raise InputError(f"split must be one of {', '.join(s.value for s in Split)}, got {split!r}") from None


def category_dir(root: str | Path, category: str) -> Path:
    """ROOT/<category>, or an InputError that lists the categories found."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data set root {root} is not a folder")
    folder = root / category
    if not folder.is_dir():
        found = ", ".join(list_dirs(root)) or "nothing"
        raise InputError(f"no category {category!r} under {root}; found: {found}")
    return folder


def _folder_records(folder: Path, defect: str, split: Split) -> list[Record]:
    """Pairs rgb/xyz/gt of one defect folder by sorted file name (names restart at 000 in every folder)."""
    rgbs = sorted_files(folder / RGB_DIR, RGB_EXTENSIONS)
    if not rgbs:
        raise InputError(f"{folder / RGB_DIR} holds no images; expected NNN.png files")
    xyzs = sorted_files(folder / XYZ_DIR, XYZ_EXTENSIONS)
    if xyzs and len(xyzs) != len(rgbs):
        raise InputError(f"{folder} has {len(rgbs)} rgb images but {len(xyzs)} xyz files; they must pair up")
    gts = sorted_files(folder / GT_DIR, RGB_EXTENSIONS) if split is Split.TEST else []
    if defect != GOOD and split is Split.TEST and len(gts) != len(rgbs):
        raise InputError(f"{folder} has {len(rgbs)} rgb images but {len(gts)} gt masks; each needs one")
    records = []
    for i, rgb in enumerate(rgbs):
        mask = gts[i] if defect != GOOD and gts else None  # good test gt is all zero: skip reading it
        records.append(
            Record(
                rgb=rgb,
                depth=xyzs[i] if xyzs else None,
                mask=mask,
                defect=defect,
                name=f"{split.value}/{defect}/{rgb.stem}",
            )
        )
    return records


class MVTec3D(PairedDataset):
    """One category and split of MVTec 3D-AD (or any tree in its layout, e.g. the synthetic world).

    A tree without `xyz` folders loads as RGB-only (depth and foreground None). Defect folders are sorted;
    good test samples get an all-False mask.
    """

    def __init__(
        self,
        root: str | Path,
        category: str,
        split: Split | str = Split.TRAIN,
        image_size: int = DEFAULT_IMAGE_SIZE,
        modality: str = "rgbd",
        cache_dir: str | Path | None = None,
        resize: str = "stretch",
        **depth_options: Any,
    ) -> None:
        self.root, self.category, self.split = Path(root), category, _split_of(split)
        folder = category_dir(root, category) / self.split.value
        if not folder.is_dir():
            found = ", ".join(list_dirs(folder.parent)) or "nothing"
            raise InputError(
                f"category {category!r} has no {self.split.value!r} split under {folder.parent}; found: {found}"
            )
        defects = list_dirs(folder) if self.split is Split.TEST else [GOOD]
        if not defects or not (folder / defects[0]).is_dir():
            raise InputError(f"{folder} holds no defect folders; expected {folder / GOOD}")
        records = [r for defect in defects for r in _folder_records(folder / defect, defect, self.split)]
        super().__init__(records, image_size, modality, cache_dir, resize, **depth_options)
