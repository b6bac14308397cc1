"""Is a dent on this part above the depth autoencoder's noise? For each CATEGORY=CHECKPOINT, on the validation
calibration set (clean validation images and their synthetic anomalies, as `calibrate` builds them): the depth
reconstruction error on clean images (median over images of the mean |reconstruction - input| on the object),
the synthetic depth-only anomalies' amplitude (median over them of the mean |anomalous - clean input| inside the
anomaly), and their ratio. Validation only, never test. Needs `python -m easynet synth data/synthetic ...` first.

    python research/depth_noise.py foam_block=checkpoints/foam_block.pt cap=runs/unseen/cap.pt --out depth_noise.jsonl

One JSON line per checkpoint; results/depth_noise.jsonl holds the runs of RECIPE.md.
"""

from __future__ import annotations

import numpy as np
import runner
import torch

from easynet.evaluate import batch_inputs

CPU = torch.device("cpu")


def measure(category: str, path: str, data: str) -> dict:
    _, model, items, y, source = runner.calibration_items(path, data, category)
    recs = []
    with torch.inference_mode():
        for start in range(0, len(items), 8):
            rgb, depth = batch_inputs(model.cfg, items[start : start + 8], CPU)
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
        "checkpoint": runner.short_name(path),
        "clean_reconstruction_error": round(n, 4),
        "depth_only_amplitude": round(a, 4),
        "ratio": round(a / n, 2),
        "n_clean": len(noise),
        "n_depth_only": len(amplitude),
    }


def main() -> None:
    a = runner.checkpoints_cli(__doc__)
    for category, path in runner.runs(a.runs):
        runner.record(measure(category, path, a.data), a.out)


if __name__ == "__main__":
    main()
