"""Two checks of object framing (`resize="object"`) on the synthetic test splits, behind the README's "Framing":
how many ground-truth pixels fall outside each image's framed square (pixel metrics are computed inside it), and
how well the square framed from the RGB image alone (no depth given, `easynet/data/foreground.py`) overlaps the
square framed from the depth foreground (IoU of the two squares). Needs
`python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0`.

    python research/framing_checks.py [CATEGORY ...]   # one JSON line per category (results/framing_checks.jsonl)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import runner

from easynet.config import MODEL_PRESETS
from easynet.data.foreground import rgb_foreground
from easynet.data.geometry import remove_table
from easynet.data.io import read_depth, read_mask, read_rgb
from easynet.data.preprocess import Frame
from easynet.data.synthetic import HELD_OUT, TUNED

PER_KIND = 3  # test images per defect folder for the IoU check (plane removal on each)


def square_iou(a: Frame, b: Frame) -> float:
    """IoU of two object frames' squares in source pixels."""
    (at, al), (bt, bl) = a.origin, b.origin
    rows = max(0, min(at + a.padded, bt + b.padded) - max(at, bt))
    cols = max(0, min(al + a.padded, bl + b.padded) - max(al, bl))
    inter = rows * cols
    return inter / (a.padded**2 + b.padded**2 - inter)


def measure(data: Path, category: str, size: int) -> dict:
    gt_total = gt_outside = 0
    ious = []
    for folder in sorted((data / category / "test").iterdir()):
        for i, rgb_path in enumerate(sorted((folder / "rgb").iterdir())):
            mask_path = folder / "gt" / rgb_path.name
            mask = read_mask(mask_path) if mask_path.is_file() else None
            if (mask is None or not mask.any()) and i >= PER_KIND:
                continue
            rgb = read_rgb(rgb_path)
            depth = read_depth(folder / "xyz" / f"{rgb_path.stem}.tiff")
            frame = Frame.fit(rgb.shape[:2], size, "object", remove_table(depth).foreground)
            if mask is not None and mask.any():
                (top, left), side = frame.origin, frame.padded
                inside = np.zeros_like(mask)
                inside[max(top, 0) : top + side, max(left, 0) : left + side] = True
                gt_total += int(mask.sum())
                gt_outside += int((mask & ~inside).sum())
            if i < PER_KIND:
                found = rgb_foreground(rgb.astype(np.float32) / 255.0)
                ious.append(square_iou(frame, Frame.fit(rgb.shape[:2], size, "object", found)))
    return {
        "category": category,
        "gt_pixels": gt_total,
        "gt_pixels_outside_square": gt_outside,
        "rgb_square_iou_mean": round(float(np.mean(ious)), 3),
        "rgb_square_iou_min": round(float(np.min(ious)), 3),
        "iou_images": len(ious),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("categories", nargs="*", default=[*TUNED, *HELD_OUT])
    p.add_argument("--data", default=runner.DATA)
    runner.add_out(p)
    a = p.parse_args()
    size = MODEL_PRESETS["lite"].image_size
    for category in a.categories:
        runner.record(measure(Path(a.data), category, size), a.out)


if __name__ == "__main__":
    main()
