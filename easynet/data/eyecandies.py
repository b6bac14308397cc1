"""Eyecandies loader: ROOT/<Category>/{train,val,test_public}/data/<idx>_<item>.<ext>.

Each sample has six RGB images under different lights (`image_0`..`image_5`), a 16-bit `depth.png` with its
`info_depth.yaml` (metres = png / 65535 * (max - min) + min) and an 8-bit `mask.png`.

Lighting: with `light=None`, training picks one light per (epoch, index) from a hash, so the light changes
from epoch to epoch but is reproducible (call `set_epoch` each epoch); validation and test use the fixed
light `image_4` (as M3DM/CPMF do) unless `light` is given. The authors' code instead fixes one random light
per training sample and tests all six lights (300 items); pass `light=k` six times to reproduce the latter.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from easynet.data.base import DEFAULT_IMAGE_SIZE, GOOD, PairedDataset, Record, list_dirs
from easynet.data.io import read_mask
from easynet.data.types import Split
from easynet.errors import InputError

CATEGORIES = (
    "CandyCane",
    "ChocolateCookie",
    "ChocolatePraline",
    "Confetto",
    "GummyBear",
    "HazelnutTruffle",
    "LicoriceSandwich",
    "Lollipop",
    "Marshmallow",
    "PeppermintCandy",
)
SPLIT_DIRS = {Split.TRAIN: "train", Split.VALIDATION: "val", Split.TEST: "test_public"}
NUM_LIGHTS = 6
EVAL_LIGHT = 4  # image_4: the light M3DM and CPMF evaluate on
ANOMALOUS = "anomalous"  # Eyecandies has no defect folders; anomalous samples share one defect name


def light_for(epoch: int, index: int) -> int:
    """The deterministic training light of sample `index` in `epoch` (0..5)."""
    digest = hashlib.blake2b(f"{epoch}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % NUM_LIGHTS


class Eyecandies(PairedDataset):
    """One category and split of Eyecandies; labels come from the masks (anomalous when any pixel > 0)."""

    def __init__(
        self,
        root: str | Path,
        category: str,
        split: Split | str = Split.TRAIN,
        image_size: int = DEFAULT_IMAGE_SIZE,
        modality: str = "rgbd",
        light: int | None = None,
        epoch: int = 0,
        cache_dir: str | Path | None = None,
        resize: str = "stretch",
        **depth_options: Any,
    ) -> None:
        root = Path(root)
        if light is not None and light not in range(NUM_LIGHTS):
            raise InputError(f"light must be 0..{NUM_LIGHTS - 1} or None, got {light}")
        try:
            self.split = Split(split)
        except ValueError:
            names = ", ".join(s.value for s in Split)
            raise InputError(f"split must be one of {names}, got {split!r}") from None
        if not (root / category).is_dir():
            found = ", ".join(list_dirs(root)) or "nothing"
            raise InputError(f"no category {category!r} under {root}; found: {found}")
        data = root / category / SPLIT_DIRS[self.split] / "data"
        if not data.is_dir():
            name = SPLIT_DIRS[self.split]
            raise InputError(f"category {category!r} has no {name!r} split ({data} is missing)")
        self.root, self.category, self.light, self.epoch = root, category, light, epoch
        records = [self._record(data, path.name[: -len("_image_0.png")]) for path in sorted(data.glob("*_image_0.png"))]
        if not records:
            raise InputError(f"{data} holds no <idx>_image_0.png files")
        super().__init__(records, image_size, modality, cache_dir, resize, **depth_options)

    def _record(self, data: Path, idx: str) -> Record:
        depth, mask = data / f"{idx}_depth.png", data / f"{idx}_mask.png"
        info = data / f"{idx}_info_depth.yaml"
        anomalous = mask.is_file() and self.split is Split.TEST and bool(read_mask(mask).any())
        return Record(
            rgb=data / f"{idx}_image_0.png",
            depth=depth if depth.is_file() else None,
            mask=mask if anomalous else None,
            defect=ANOMALOUS if anomalous else GOOD,
            name=f"{SPLIT_DIRS[self.split]}/{idx}",
            info_yaml=info if info.is_file() else None,
        )

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that picks the training lights."""
        self.epoch = int(epoch)

    def light_of(self, index: int) -> int:
        """The light used for sample `index` now."""
        if self.light is not None:
            return self.light
        return light_for(self.epoch, index) if self.split is Split.TRAIN else EVAL_LIGHT

    def rgb_path(self, index: int) -> Path:
        first = self.records[index].rgb
        return first.with_name(first.name.replace("_image_0.", f"_image_{self.light_of(index)}."))
