"""Is it the depth input or the synthetic amplitude? Gasket, `lite`, 800 steps, one swapped choice per run:

* ``A``: `metric` depth input, synthetic depth anomalies drawn as `height` draws them (uniform 0.1-0.5 units of
  the fitted scale, clipped to [0, DEPTH_MAX]);
* ``C``: `height` depth input, anomalies drawn as `metric` draws them (log-uniform 0.3-4 mm, in units of gasket's
  fitted 9.58 mm scale).

    python benchmarks/metric_depth/swap_run.py A runs/swap_A.pt [SEED]    # one JSON line (swap.jsonl)

The displacement is swapped by replacing `AnomalySynthesizer._displace` in this process only (training and
calibration); the test split is evaluated as usual. Needs `python -m easynet synth data/synthetic --size 256
--n-train 100 --seed 0` first.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import easynet.synth as synth
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.pipeline import evaluate_category, train_category

GASKET_SCALE_MM = 9.579  # the metric scale fitted on gasket's training split


def main() -> None:
    variant, out = sys.argv[1], sys.argv[2]
    train_cfg = TRAIN_PRESETS["lite"]
    if len(sys.argv) > 3:
        train_cfg = train_cfg.replace(seed=int(sys.argv[3]))

    def displace(self, depth, bump, rng):
        if variant == "A":
            amplitude = rng.uniform(0.1, 0.5) * rng.choice([-1.0, 1.0])
        else:
            amplitude = np.exp(rng.uniform(*np.log([0.3, 4.0]))) / GASKET_SCALE_MM * rng.choice([-1.0, 1.0])
        return np.clip(depth + amplitude * bump, 0.0, synth.DEPTH_MAX).astype(np.float32)

    synth.AnomalySynthesizer._displace = displace
    encoding = "metric" if variant == "A" else "height"
    start = time.time()
    train_category(
        "data/synthetic",
        "gasket",
        out,
        train_cfg=train_cfg,
        device="cpu",
        preset="lite",
        model_cfg=MODEL_PRESETS["lite"].replace(depth_encoding=encoding),
        progress=False,
    )
    report, _, _ = evaluate_category(out, "data/synthetic", "gasket", gates=("close", "open", "control"), device="cpu")
    test = report.i_auroc_table()
    print(
        json.dumps({"variant": variant, "seed": train_cfg.seed, "s": round(time.time() - start), "test": test}),
        flush=True,
    )


if __name__ == "__main__":
    main()
