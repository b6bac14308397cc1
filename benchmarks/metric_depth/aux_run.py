"""Experiment: a second, depth-only view of the fused head during training. Every training step also runs the
fused head with the RGB features zeroed and adds its focal loss against the part of the anomaly that is in
depth, so the fused head is pushed to read depth on every image (not only on the share that modality dropout
would pick). Nothing in the library changes: the model's fused pass and the loss are wrapped in this process only.

    python benchmarks/metric_depth/aux_run.py gasket metric runs/aux    # one JSON line (aux.jsonl)

CATEGORY, ENCODING (height | metric), WORK folder; `lite`, 800 steps. Needs `python -m easynet synth
data/synthetic --size 256 --n-train 100 --seed 0` first.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import easynet.losses as losses
import easynet.model as model_lib
import easynet.train as train_lib
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.pipeline import evaluate_category, train_category

AUX_WEIGHT = 1.0
_state: dict[str, torch.Tensor | None] = {}


def fused_with_depth_view(self, m_rgb, pooled_rgb, m_depth, size, head="forward", rgb_keep=None):
    """EasyNet._fused, plus, in training, the fused head's depth-only view (RGB merges zeroed) in ``_state``."""
    result = _original_fused(self, m_rgb, pooled_rgb, m_depth, size, head, rgb_keep)
    if self.training:
        _state["aux"] = _original_fused(
            self, m_rgb, pooled_rgb, m_depth, size, head, torch.zeros_like(pooled_rgb[:, 0])
        )[2]
    return result


_original_fused = model_lib.EasyNet._fused


def main() -> None:
    category, encoding, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    original_dropout, original_loss = train_lib._fused_rgb_dropout, losses.EasyNetLoss.forward

    def dropout(batch, p):
        _state["mask_depth"] = batch.get("mask_depth")
        return original_dropout(batch, p)

    def loss(self, out, rgb, depth, mask, mask_rgb=None):
        terms = original_loss(self, out, rgb, depth, mask, mask_rgb)
        aux, target = _state.pop("aux", None), _state.get("mask_depth")
        if aux is None or target is None:
            return terms
        extra = losses.focal_loss(aux, target, self.cfg.focal_gamma)
        return terms._replace(total=terms.total + AUX_WEIGHT * extra)

    model_lib.EasyNet._fused = fused_with_depth_view
    train_lib._fused_rgb_dropout = dropout
    losses.EasyNetLoss.forward = loss
    out = work / f"{category}_{encoding}_aux.pt"
    start = time.time()
    summary = train_category(
        "data/synthetic",
        category,
        out,
        train_cfg=TRAIN_PRESETS["lite"],
        device="cpu",
        preset="lite",
        model_cfg=MODEL_PRESETS["lite"].replace(depth_encoding=encoding),
        progress=False,
    )
    report, _, _ = evaluate_category(out, "data/synthetic", category, gates=("close", "open", "control"), device="cpu")
    test = report.i_auroc_table()
    fused = summary.validation["i_auroc_by_kind"]["fused"]
    row = {"category": category, "encoding": encoding, "aux_weight": AUX_WEIGHT, "s": round(time.time() - start)}
    print(json.dumps({**row, "validation_fused_by_kind": fused, "test": test}), flush=True)


if __name__ == "__main__":
    main()
