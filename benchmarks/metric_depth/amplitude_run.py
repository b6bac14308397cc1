"""Gasket, `lite`, metric depth, 800 steps, with the synthetic depth anomalies drawn from LO-HI mm instead of the
default 0.3-4 mm. Needs `python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python benchmarks/metric_depth/amplitude_run.py 1.0 6.0      # prints one JSON line (gasket_amplitude_1_6mm.json)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.pipeline import evaluate_category, train_category


def main() -> None:
    lo, hi = float(sys.argv[1]), float(sys.argv[2])
    train_cfg = TRAIN_PRESETS["paper"].replace(steps=800)
    train_cfg = train_cfg.replace(synth=dataclasses.replace(train_cfg.synth, depth_amplitude_mm=(lo, hi)))
    out = f"gasket_amp_{lo}_{hi}.pt"
    start = time.time()
    summary = train_category(
        "data/synthetic",
        "gasket",
        out,
        train_cfg=train_cfg,
        device="cpu",
        preset="lite",
        model_cfg=MODEL_PRESETS["lite"].replace(depth_encoding="metric"),
        progress=False,
    )
    report, _, _ = evaluate_category(out, "data/synthetic", "gasket", gates=("close", "open", "control"), device="cpu")
    test = {g: [round(r["i_auroc"], 3), r["per_defect_i_auroc"]] for g, r in report.gates.items()}
    print(
        json.dumps({"amp": [lo, hi], "s": round(time.time() - start), "validation": summary.validation, "test": test})
    )


if __name__ == "__main__":
    main()
