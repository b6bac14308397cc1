"""Shared machinery of the data set loaders: a list of file records turned into resized `Sample`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from easynet.config import DEPTH_ENCODINGS, RGB_BACKGROUNDS
from easynet.data.geometry import cached_prepare_depth, zero_background
from easynet.data.io import check_same_size, depth_shape, read_mask, read_rgb
from easynet.data.preprocess import RESIZE_MODES, Frame
from easynet.data.types import Sample
from easynet.errors import InputError

MODALITIES = ("rgbd", "rgb")
DEFAULT_IMAGE_SIZE = 256
GOOD = "good"


@dataclass(frozen=True)
class Record:
    """The files of one sample. `mask` None means all-good; `depth` None means no depth on disk."""

    rgb: Path
    depth: Path | None
    mask: Path | None
    defect: str
    name: str
    info_yaml: Path | None = None


class PairedDataset:
    """A sequence of `Sample`s built from `Record`s; subclasses only list the records.

    Attributes:
        image_size: side S of the square samples.
        modality: "rgbd", or "rgb" for the RGB-only track (depth and foreground are None). A data set
            without depth files behaves as "rgb" whatever was asked (see `has_depth`).
        resize: "stretch", "letterbox", "pad" or "object" (see `easynet.data.preprocess`; "object" frames the
            depth foreground, so the RGB, the mask and the depth share the frame that plane removal found).
        depth_encoding, depth_scale: how depth becomes the model's input (`easynet.data.geometry.encode_depth`).
        rgb_background: "zero" sets RGB to 0 on measured points off the object (the authors' input).
        These follow the checkpoint's ModelConfig: `easynet.pipeline.loader_options(cfg)`.
    """

    def __init__(
        self,
        records: list[Record],
        image_size: int = DEFAULT_IMAGE_SIZE,
        modality: str = "rgbd",
        cache_dir: str | Path | None = None,
        resize: str = "stretch",
        depth_encoding: str = "height",
        depth_scale: float = 0.0,
        rgb_background: str = "keep",
    ) -> None:
        if resize not in RESIZE_MODES:
            raise InputError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if modality not in MODALITIES:
            raise InputError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        if image_size < 8:
            raise InputError(f"image_size must be at least 8 pixels, got {image_size}")
        self.records = records
        self.image_size = int(image_size)
        self.modality = modality
        if depth_encoding not in DEPTH_ENCODINGS:
            raise InputError(f"depth_encoding must be one of {', '.join(DEPTH_ENCODINGS)}, got {depth_encoding!r}")
        if rgb_background not in RGB_BACKGROUNDS:
            raise InputError(f"rgb_background must be one of {', '.join(RGB_BACKGROUNDS)}, got {rgb_background!r}")
        self.cache_dir = cache_dir
        self.resize = resize
        self.depth_encoding, self.depth_scale, self.rgb_background = depth_encoding, depth_scale, rgb_background

    @property
    def has_depth(self) -> bool:
        """True when depth is used: modality "rgbd" and every record has a depth file."""
        return self.modality == "rgbd" and bool(self.records) and all(r.depth for r in self.records)

    @property
    def defects(self) -> list[str]:
        """Sorted defect names present ("good" included when present)."""
        return sorted({r.defect for r in self.records})

    @property
    def labels(self) -> np.ndarray:
        """(N,) int image labels: 0 good, 1 anomalous (from the record's defect name)."""
        return np.array([int(r.defect != GOOD) for r in self.records], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def rgb_path(self, index: int) -> Path:
        """The RGB file of sample `index` (Eyecandies overrides it to choose a light)."""
        return self.records[index].rgb

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        record = self.records[index]
        rgb = read_rgb(self.rgb_path(index))
        size = self.image_size
        frame = Frame.fit(rgb.shape[:2], size, self.resize)
        depth = foreground = None
        if self.has_depth:
            check_same_size(rgb, np.empty(depth_shape(record.depth), dtype=np.uint8))
            prepared = cached_prepare_depth(
                record.depth, frame, self.cache_dir, record.info_yaml, self.depth_encoding, self.depth_scale
            )
            depth, foreground, frame = prepared.depth, prepared.foreground, prepared.frame
            if self.rgb_background == "zero":
                rgb = zero_background(rgb, prepared.background)
        if record.mask is not None:
            mask = read_mask(record.mask)
            if mask.shape != rgb.shape[:2]:
                raise InputError(
                    f"mask {record.mask.name} is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"is {rgb.shape[1]}x{rgb.shape[0]}; they must be the same size"
                )
            mask = frame.mask(mask)
        else:
            mask = np.zeros((size, size), dtype=bool)
        return Sample(
            rgb=frame.image(rgb),
            depth=depth,
            foreground=foreground,
            mask=mask,
            label=int(record.defect != GOOD or bool(mask.any())),
            defect=record.defect,
            name=record.name,
            frame=frame,
        )


def sorted_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files of `folder` with one of `extensions` (case-insensitive), sorted by name; [] if absent."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def list_dirs(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders of `folder`."""
    return (
        sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
    )
