"""What fails on real tire defects (issue "Real tire on the held-aside images"), measured for one checkpoint on
validation (clean + the calibration's synthetic anomalies) and on the public 25, never used to choose anything.

    python research/tire_failures.py --checkpoint runs/tire/R1/final.pt

For each score variant (raw probabilities or the calibration's position-wise normalisation; with or without a
band of BAND px along the tyre's silhouette left out of the image score) it reports validation I-AUROC, public-25
I-AUROC overall and per class, and the bootstrap spread; and, for clean validation images and good test images,
the share whose highest point lies within BAND px of the silhouette (the border), and how holes rank against the
good tyres. Appends one row to research/results/tire_failures.jsonl.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import runner
import torch
from tire_protocol import DATA, bootstrap

from easynet.data.foreground import rgb_foreground
from easynet.data.registry import Split, open_dataset
from easynet.evaluate import run_heads
from easynet.metrics import image_auroc
from easynet.pipeline import loader_options
from easynet.scoring import image_filter_size, image_scores, position_normalise, valid_masks

BAND = 8  # px at the model's size (256): the border band along the silhouette


def silhouettes(items) -> np.ndarray:
    """(B, S, S) bool object masks from RGB (the whole valid image where none is found)."""
    out = []
    for item in items:
        valid = item.frame.valid if item.frame is not None and item.frame.pads else None
        mask = rgb_foreground(item.rgb, valid)
        size = item.rgb.shape[0]
        out.append(mask if mask is not None else (valid if valid is not None else np.ones((size, size), bool)))
    return np.stack(out)


def inner(masks: np.ndarray, band: int) -> np.ndarray:
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    return np.stack([cv2.erode(m.astype(np.uint8), kernel) > 0 for m in masks])


def peaks_near_border(maps: torch.Tensor, masks: np.ndarray, size: int) -> np.ndarray:
    """(B,) bool: the filtered map's highest point lies on the object's border band (or off the object)."""
    k = image_filter_size(size)
    pooled = torch.nn.functional.avg_pool2d(maps.float()[:, None], k, stride=1, padding=k // 2)[:, 0]
    flat = pooled.flatten(1).argmax(1).numpy()
    rows, cols = flat // size, flat % size
    core = inner(masks, BAND)
    return ~core[np.arange(len(flat)), rows, cols]


def scores(maps: torch.Tensor, valid: torch.Tensor | None, keep: np.ndarray | None, size: int) -> np.ndarray:
    """The shipped image score; ``keep`` (B, S, S) leaves everything else at the map's minimum."""
    if keep is not None:
        low = maps.flatten(1).min(1).values[:, None, None]
        maps = torch.where(torch.from_numpy(keep), maps, low)
    return image_scores(maps, size, valid).numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=DATA)
    runner.add_out(p, "tire_failures.jsonl")
    a = p.parse_args()
    ckpt, model, val_items, val_labels, _ = runner.calibration_items(a.checkpoint, a.data, "tire")
    cfg, cal, cpu = ckpt.model_config, ckpt.calibration, torch.device("cpu")
    test = open_dataset(a.data, "tire", Split.TEST, **loader_options(cfg))
    test_items = [test[i] for i in range(len(test))]
    test_labels = np.array([s.label for s in test_items])
    sets = {"validation": (val_items, np.asarray(val_labels)), "test": (test_items, test_labels)}
    row: dict = {"checkpoint": runner.short_name(a.checkpoint), "band_px": BAND, "position_norm": cal.rgb.normalised}
    for name, (items, labels) in sets.items():
        raw = torch.from_numpy(run_heads(model, items, cpu).prob_rgb)
        norm = position_normalise(raw, cal.rgb)
        valid, masks = valid_masks(items), silhouettes(items)
        core = inner(masks, BAND)
        for variant, maps, keep in (("raw", raw, None), ("normalised", norm, None), ("raw, border out", raw, core),
                                    ("normalised, border out", norm, core)):  # fmt: skip
            s = scores(maps, valid, keep, cfg.image_size)
            entry = row.setdefault(variant, {})
            entry[f"{name}_i_auroc"] = round(float(image_auroc(labels, s)), 4)
            if name == "test":
                entry["bootstrap"] = bootstrap(labels, s)
                defects = [it.defect for it in items]
                good = np.array([d == "good" for d in defects])
                for kind in sorted(set(defects) - {"good"}):
                    pick = good | np.array([d == kind for d in defects])
                    entry.setdefault("per_class", {})[kind] = round(float(image_auroc(labels[pick], s[pick])), 3)
                holes = s[np.array([d == "hole" for d in defects])]
                entry["holes_below_best_good"] = int((holes < s[good].max()).sum())
        for variant, maps in (("raw", raw), ("normalised", norm)):
            near = peaks_near_border(maps, masks, cfg.image_size)
            clean = labels == 0
            row[variant][f"{name}_clean_peaks_on_border"] = f"{int(near[clean].sum())}/{int(clean.sum())}"
            row[variant][f"{name}_defect_peaks_on_border"] = f"{int(near[~clean].sum())}/{int((~clean).sum())}"
    runner.record(row, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
