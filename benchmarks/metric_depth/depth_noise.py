"""Is a dent on this part above the depth autoencoder's noise? For each CATEGORY=CHECKPOINT, on the validation
calibration set (clean validation images and their synthetic anomalies, as `calibrate` builds them): the depth
reconstruction error on clean images (median over images of the mean |reconstruction - input| on the object),
the synthetic depth-only anomalies' amplitude (median over them of the mean |anomalous - clean input| inside the
anomaly), and their ratio. Validation only, never test. Needs `python -m easynet synth data/synthetic ...` first.

    python benchmarks/metric_depth/depth_noise.py foam_block=checkpoints/foam_block.pt cap=runs/unseen/cap.pt

Prints one JSON line per checkpoint; benchmarks/metric_depth/depth_noise.jsonl holds the runs of RECIPE.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from easynet.checkpoint import load_checkpoint
from easynet.data.registry import Split, open_dataset
from easynet.evaluate import batch_inputs, calibration_set
from easynet.pipeline import loader_options


def measure(category: str, path: str, data: str) -> dict:
    ckpt = load_checkpoint(path)
    model = ckpt.build_model().eval()
    validation = open_dataset(data, category, Split.VALIDATION, **loader_options(ckpt.model_config))
    items, y, source = calibration_set(model, validation, ckpt.train_config.synth)
    recs = []
    with torch.inference_mode():
        for start in range(0, len(items), 8):
            rgb, depth = batch_inputs(model.cfg, items[start : start + 8], torch.device("cpu"))
            recs.append(model(rgb, depth).rec_depth[:, 0].numpy())
    rec = np.concatenate(recs)
    clean_of = {int(s): i for i, (s, label) in enumerate(zip(source, y)) if label == 0}
    noise, amplitude = [], []
    for i, item in enumerate(items):
        if y[i] == 0:
            on_object = item.foreground if item.foreground is not None else np.ones_like(item.depth, bool)
            noise.append(float(np.abs(rec[i] - item.depth)[on_object].mean()))
        elif getattr(item, "kind", "") == "depth" and item.mask.any():
            clean = items[clean_of[int(source[i])]].depth
            amplitude.append(float(np.abs(item.depth - clean)[item.mask > 0].mean()))
    n, a = float(np.median(noise)), float(np.median(amplitude)) if amplitude else float("nan")
    return {
        "category": category,
        "checkpoint": "/".join(Path(path).parts[-2:]),
        "clean_reconstruction_error": round(n, 4),
        "depth_only_amplitude": round(a, 4),
        "ratio": round(a / n, 2),
        "n_clean": len(noise),
        "n_depth_only": len(amplitude),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="CATEGORY=CKPT")
    p.add_argument("--data", default="data/synthetic")
    a = p.parse_args()
    for item in a.runs:
        category, path = item.split("=", 1)
        print(json.dumps(measure(category, path, a.data)), flush=True)


if __name__ == "__main__":
    main()
