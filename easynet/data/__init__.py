"""Data: file readers, geometry (plane removal), benchmark loaders and the synthetic world generator."""

from easynet.data.eyecandies import Eyecandies
from easynet.data.mvtec3d import MVTec3D
from easynet.data.pairs import PairFolder
from easynet.data.registry import detect_format, open_dataset
from easynet.data.types import DepthMap, Sample, Split

__all__ = [
    "DepthMap",
    "Eyecandies",
    "MVTec3D",
    "PairFolder",
    "Sample",
    "Split",
    "detect_format",
    "open_dataset",
]
