"""A plain folder of RGB-D pairs, flat or with rgb/, depth/, mask/ sub-folders, split honestly.

Flat: `NAME.png|jpg|bmp` (RGB) + `NAME.tiff|NAME.tif|NAME_depth.png|NAME.npy` (depth) + optional
`NAME_mask.png`. Sub-folders: `rgb/NAME.*`, `depth/NAME.*`, `mask/NAME.*` with matching stems. A pair is a
labelled defect when its mask has a pixel > 0 or its name has a word `bad`, `defect`, `defective`, `anomaly`
or `anomalous` (`bad_03.png`, `scratch-defect.png`); every other pair is good.

Splits (training and calibration see good pairs only; the test split is never read by either):
* Split folders `ROOT/train`, `ROOT/validation` (or `ROOT/val`) and `ROOT/test`, each laid out as above. A
  labelled defect in train or validation is refused. Without a validation folder, validation is the seeded
  VALIDATION_FRACTION of train's good pairs (below).
* One folder: a seeded split of its good pairs (SPLIT_SEED; VALIDATION_FRACTION to validation, TEST_FRACTION
  to test, at least one to train, each part sorted by name); every labelled defect goes to test.
`PairFolder(root)` without a split lists every pair, for browsing and prediction, never for training.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from easynet.data.base import DEFAULT_IMAGE_SIZE, GOOD, PairedDataset, Record, sorted_files
from easynet.data.io import read_mask
from easynet.data.types import Split
from easynet.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
DEPTH_SUFFIXES = (".tiff", ".tif", "_depth.png", ".npy")  # tried in this order after the stem
SUBFOLDER_DEPTH = (".tiff", ".tif", ".png", ".npy")
MASK_SUFFIX = "_mask"
ANOMALOUS = "anomalous"
DEFECT_WORDS = frozenset({"bad", "defect", "defects", "defective", "anomaly", "anomalous"})
SPLIT_FOLDERS = {Split.TRAIN: ("train",), Split.VALIDATION: ("validation", "val"), Split.TEST: ("test",)}
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2  # of the good pairs (rounded)
TEST_FRACTION = 0.2


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


def named_defect(name: str) -> bool:
    """True when a pair's name has a defect word (``bad_03``, ``scratch-defect``; not ``badge``)."""
    return bool(DEFECT_WORDS & set(re.split(r"[^a-z0-9]+", name.lower())))


def _record(rgb: Path, depth: Path | None, mask: Path | None, name: str) -> Record:
    masked = mask is not None and bool(read_mask(mask).any())
    anomalous = masked or named_defect(name)
    return Record(
        rgb=rgb, depth=depth, mask=mask if masked else None, defect=ANOMALOUS if anomalous else GOOD, name=name
    )


def folder_records(folder: Path) -> list[Record]:
    """Every pair of one folder (flat or with rgb/ depth/ mask/ sub-folders), sorted by name."""
    records = _subfolder_records(folder) if (folder / "rgb").is_dir() else _flat_records(folder)
    if not records:
        raise InputError(
            f"{folder} holds no RGB images (.png, .jpg, .bmp); expected NAME.png + "
            "NAME.tiff pairs or rgb/ and depth/ sub-folders"
        )
    return records


def _split_folder(root: Path, split: Split) -> Path | None:
    return next((root / n for n in SPLIT_FOLDERS[split] if (root / n).is_dir()), None)


def _good_only(records: list[Record], folder: Path, split: Split) -> list[Record]:
    bad = [r.name for r in records if r.defect != GOOD]
    if bad:
        raise InputError(
            f"{folder} is the {split.value} split but holds labelled defects ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); move them to {folder.parent / 'test'}, since "
            "training and calibration must see good pairs only"
        )
    return records


def seeded_split(good: list[Record], held_out: float) -> tuple[list[Record], list[Record]]:
    """(kept, held out): ``held_out`` of the good pairs (rounded, leaving at least one kept), drawn with
    SPLIT_SEED; both parts sorted by name."""
    n = len(good)
    k = min(round(n * held_out), max(n - 1, 0))
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    held = sorted(int(i) for i in order[:k])
    return [r for i, r in enumerate(good) if i not in held], [good[i] for i in held]


def split_records(root: Path, split: Split) -> list[Record]:
    """The records of one split of a pair folder (see the module docstring)."""
    train_dir = _split_folder(root, Split.TRAIN)
    if train_dir is not None:  # explicit split folders
        if split is Split.TEST:
            test_dir = _split_folder(root, Split.TEST)
            if test_dir is None:
                raise InputError(f"{root} has split folders but no test folder; add {root / 'test'}")
            return folder_records(test_dir)
        train = _good_only(folder_records(train_dir), train_dir, Split.TRAIN)
        val_dir = _split_folder(root, Split.VALIDATION)
        if val_dir is not None:
            return train if split is Split.TRAIN else _good_only(folder_records(val_dir), val_dir, split)
        kept, validation = seeded_split(train, VALIDATION_FRACTION)
        return kept if split is Split.TRAIN else validation
    records = folder_records(root)
    good = [r for r in records if r.defect == GOOD]
    rest, test = seeded_split(good, TEST_FRACTION)
    share = VALIDATION_FRACTION / (1.0 - TEST_FRACTION)  # of what is left after test
    train, validation = seeded_split(rest, share)
    if split is Split.TRAIN:
        return train
    if split is Split.VALIDATION:
        return validation
    return sorted(test + [r for r in records if r.defect != GOOD], key=lambda r: r.name)


class PairFolder(PairedDataset):
    """One split of a pair folder (``split`` None: every pair, defects included, not for training); pairs
    whose depth file is missing make the split RGB-only."""

    def __init__(
        self,
        root: str | Path,
        image_size: int = DEFAULT_IMAGE_SIZE,
        modality: str = "rgbd",
        cache_dir: str | Path | None = None,
        resize: str = "stretch",
        split: Split | str | None = None,
        **depth_options: Any,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"pair folder {self.root} is not a folder")
        if split is None:
            records = folder_records(self.root)
        else:
            try:
                self.split = Split(split)
            except ValueError:
                raise InputError(f"split must be one of {', '.join(s.value for s in Split)}, got {split!r}") from None
            records = split_records(self.root, self.split)
        super().__init__(records, image_size, modality, cache_dir, resize, **depth_options)
