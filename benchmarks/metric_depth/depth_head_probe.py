"""Where a depth-blind run loses the signal: on a checkpoint trained with the training-only depth head
(`ModelConfig.depth_head`), the validation I-AUROC on depth-only synthetic anomalies (clean vs depth-only) of the
fused head and of the depth head itself, which reads only the depth stream. A depth head near 0.5 means the
depth features carry no usable anomaly signal; a depth head well above a blind fused head means the fused head
ignores a signal that is there (benchmarks/RECIPE.md). Validation only, never test.

    python benchmarks/metric_depth/depth_head_probe.py CATEGORY=CKPT ...   # one JSON line per checkpoint
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from easynet.checkpoint import load_checkpoint
from easynet.data.registry import Split, open_dataset
from easynet.evaluate import _auroc, batch_inputs, calibration_set, run_heads
from easynet.pipeline import loader_options


def probe(category: str, path: str, data: str) -> dict:
    ckpt = load_checkpoint(path)
    model = ckpt.build_model().eval()
    if model.depth_head is None:
        raise SystemExit(f"{path} has no depth head (train it with --depth-head on)")
    validation = open_dataset(data, category, Split.VALIDATION, **loader_options(ckpt.model_config))
    items, y, _ = calibration_set(model, validation, ckpt.train_config.synth)
    heads = run_heads(model, items, torch.device("cpu"))
    maps = []
    with torch.inference_mode():
        for start in range(0, len(items), 8):
            rgb, depth = batch_inputs(model.cfg, items[start : start + 8], torch.device("cpu"))
            maps.append(torch.softmax(model(rgb, depth).logits_depth, 1)[:, 1].numpy())
    score_depth = heads.score(np.concatenate(maps))
    kinds = np.array(["good" if not label else getattr(item, "kind", "both") for item, label in zip(items, y)])
    row = {"category": category, "checkpoint": path}
    for kind in ("depth", "both", "rgb"):
        keep = (kinds == "good") | (kinds == kind)
        row[kind] = {
            "fused": round(_auroc(y[keep], heads.score_fused[keep]), 4),
            "depth_head": round(_auroc(y[keep], score_depth[keep]), 4),
        }
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="CATEGORY=CKPT")
    p.add_argument("--data", default="data/synthetic")
    a = p.parse_args()
    for item in a.runs:
        category, path = item.split("=", 1)
        print(json.dumps(probe(category, path, a.data)), flush=True)


if __name__ == "__main__":
    main()
