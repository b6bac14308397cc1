"""Is the metric-depth dent miss in the inputs or in the training? Each gasket checkpoint of seed_run.py is
evaluated on the other encoding's inputs (weights untouched, only the checkpoint's depth encoding swapped).

    python benchmarks/metric_depth/cross_eval.py runs/seed/gasket_height_67.pt runs/seed/gasket_metric_67.pt

Prints one line per swapped checkpoint: I-AUROC per gate and per defect kind on gasket's test split.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from easynet.checkpoint import load_checkpoint, save_checkpoint
from easynet.pipeline import evaluate_category


def main() -> None:
    height, metric = load_checkpoint(sys.argv[1]), load_checkpoint(sys.argv[2])
    scale = metric.model_config.depth_scale
    height.model_config = height.model_config.replace(depth_encoding="metric", depth_scale=scale)
    metric.model_config = metric.model_config.replace(depth_encoding="height", depth_scale=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, ckpt in (("height-trained on metric inputs", height), ("metric-trained on height inputs", metric)):
            path = save_checkpoint(ckpt, Path(tmp) / "swapped.pt")
            report, _, _ = evaluate_category(path, "data/synthetic", "gasket", gates=("close", "open"), device="cpu")
            table = {
                g: (round(r["i_auroc"], 3), {k: round(v, 3) for k, v in r["per_defect_i_auroc"].items()})
                for g, r in report.gates.items()
            }
            print(name, table, flush=True)


if __name__ == "__main__":
    main()
