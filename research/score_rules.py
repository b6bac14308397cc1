"""Which image-score rule (from an anomaly map to one number per image) to use, chosen on validation only.

For one checkpoint, computes the RGB head's maps on the validation split (clean images plus the calibration's
synthetic anomalies, exactly as `calibrate` builds them) and on the test split once, then reports the I-AUROC of
each rule on both. The rule is chosen on the validation column; the test column is reported, never used.

    python research/score_rules.py --checkpoint CKPT --data ../shared/data/mvtec3d-tire-rgb --category tire

Writes research/results/score_rules.json (one entry per checkpoint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import runner
import torch
import torch.nn.functional as F

from easynet.atomic import atomic_write_bytes
from easynet.config import TRAIN_PRESETS
from easynet.data.registry import Split, open_dataset
from easynet.evaluate import run_heads
from easynet.metrics import image_auroc
from easynet.pipeline import loader_options
from easynet.scoring import valid_masks

OUTPUT = runner.RESULTS / "score_rules.json"
FILTERS = (1, 5, 11, 21, 31, 41)  # mean-filter sides at 256 px (21 is the shipped rule)
TOP_FRACTIONS = (0.001, 0.01)  # mean of the top fraction of valid pixels


def rules(maps: torch.Tensor, valid: torch.Tensor | None, size: int) -> dict[str, np.ndarray]:
    maps = maps.float() if valid is None else maps.float() * valid
    out = {}
    for k256 in FILTERS:
        k = max(1, int(round(k256 * size / 256)) | 1)
        pooled = F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=False)
        out[f"max of {k256}px mean"] = pooled.flatten(1).max(1).values.numpy()
    flat = maps.flatten(1)
    n_valid = flat.shape[1] if valid is None else valid.flatten(1).sum(1)
    for frac in TOP_FRACTIONS:
        scores = []
        for i in range(flat.shape[0]):
            n = max(1, int(float(n_valid if np.isscalar(n_valid) else n_valid[i]) * frac))
            scores.append(float(flat[i].topk(n).values.mean()))
        out[f"mean of top {frac:.1%}"] = np.asarray(scores)
    return out


def clean_hot_spot(maps: torch.Tensor, valid: torch.Tensor | None, size: int, radius: int = 12) -> dict:
    """Where clean images score highest (raw maps, the shipped 21 px rule): the largest group of clean images
    whose highest point lies within ``radius`` px (at the model size) of one of them, and that point."""
    maps = maps.float() if valid is None else maps.float() * valid
    k = max(1, int(round(21 * size / 256)) | 1)
    pooled = F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=False)[:, 0]
    flat = pooled.flatten(1).argmax(1)
    points = torch.stack([flat // size, flat % size], 1)
    near = ((points[:, None] - points[None]).abs().max(-1).values <= radius).sum(1)
    centre = int(near.argmax())
    return {"n_clean": len(points), "same_spot": int(near[centre]), "spot_row_col": points[centre].tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument(
        "--validation-synth",
        help="build the validation anomalies with this training preset's "
        "synthesis (e.g. base) instead of the checkpoint's own, so that variants are compared on "
        "one validation set",
    )
    a = parser.parse_args()
    if not Path(a.data).is_dir():
        print(f"{a.data} is absent: nothing to measure")
        return 0
    synth = TRAIN_PRESETS[a.validation_synth].synth if a.validation_synth else None
    ckpt, model, items, labels, _ = runner.calibration_items(a.checkpoint, a.data, a.category, synth)
    cfg = ckpt.model_config
    test = open_dataset(a.data, a.category, Split.TEST, **loader_options(cfg))
    device = torch.device("cpu")
    test_items = [test[i] for i in range(len(test))]
    test_labels = [int(s.label) for s in test_items]
    result, hot_spot = {}, {}
    for name, its, ys in (("validation", items, labels), ("test", test_items, test_labels)):
        heads = run_heads(model, its, device)
        valid = valid_masks(its)
        if name == "validation":
            clean = np.flatnonzero(np.asarray(ys) == 0)
            hot_spot = clean_hot_spot(
                torch.from_numpy(heads.prob_rgb[clean]), None if valid is None else valid[clean], cfg.image_size
            )
            print(
                f"clean validation images scoring highest at one spot (within 12 px of row, col "
                f"{hot_spot['spot_row_col']}): {hot_spot['same_spot']} of {hot_spot['n_clean']}"
            )
        for rule, scores in rules(torch.from_numpy(heads.prob_rgb), valid, cfg.image_size).items():
            result.setdefault(rule, {})[name] = round(float(image_auroc(np.asarray(ys), scores)), 4)
    best = max(result, key=lambda r: result[r]["validation"])
    print(f"{'rule':24s} validation  test")
    for rule, v in result.items():
        mark = "   <- best on validation" if rule == best else ""
        print(f"{rule:24s} {v['validation']:.4f}     {v['test']:.4f}{mark}")
    data = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {}
    data[Path(a.checkpoint).name] = {
        "category": a.category,
        "n_validation": len(items),
        "n_test": len(test_items),
        "rules": result,
        "best_on_validation": best,
        "clean_validation_hot_spot": hot_spot,
    }
    atomic_write_bytes(OUTPUT, (json.dumps(data, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
