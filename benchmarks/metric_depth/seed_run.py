"""Is "metric depth makes dents worse" more than run-to-run noise? Gasket, `lite`, the shipped recipe (`paper`
training preset, 800 steps), one depth encoding and one training seed per run. Needs
`python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python benchmarks/metric_depth/seed_run.py height 67 runs/seed      # one JSON line per run
    python benchmarks/metric_depth/seed_run.py metric 67 runs/seed

The shipped gasket checkpoint is `height` with the preset's seed (66); benchmarks/metric_depth/gasket.json is
`metric` with seed 66. Results: benchmarks/metric_depth/seeds.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.pipeline import evaluate_category, train_category


def main() -> None:
    encoding, seed, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"gasket_{encoding}_{seed}.pt"
    start = time.time()
    summary = train_category(
        "data/synthetic",
        "gasket",
        out,
        train_cfg=TRAIN_PRESETS["paper"].replace(steps=800, seed=seed),
        device="cpu",
        preset="lite",
        model_cfg=MODEL_PRESETS["lite"].replace(depth_encoding=encoding),
        progress=False,
    )
    report, _, _ = evaluate_category(out, "data/synthetic", "gasket", gates=("close", "open", "control"), device="cpu")
    test = report.i_auroc_table()
    row = {"encoding": encoding, "seed": seed, "s": round(time.time() - start), "validation": summary.validation}
    print(json.dumps({**row, "test": test}), flush=True)


if __name__ == "__main__":
    main()
