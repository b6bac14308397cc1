"""Is the metric-depth dent miss in the inputs or in the training? Each gasket checkpoint of seed_run.py is
evaluated on the other encoding's inputs (weights untouched, only the checkpoint's depth encoding swapped).

    python research/cross_eval.py runs/seed/gasket_height_67.pt runs/seed/gasket_metric_67.pt

One JSON line per swapped checkpoint: I-AUROC per gate (close, open) and per defect kind on gasket's test split.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import runner

from easynet.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("height", help="a gasket checkpoint trained on `height` inputs")
    p.add_argument("metric", help="a gasket checkpoint trained on `metric` inputs (its depth scale is used)")
    p.add_argument("--data", default=runner.DATA)
    runner.add_out(p)
    a = p.parse_args()
    height, metric = load_checkpoint(a.height), load_checkpoint(a.metric)
    scale = metric.model_config.depth_scale
    height.model_config = height.model_config.replace(depth_encoding="metric", depth_scale=scale)
    metric.model_config = metric.model_config.replace(depth_encoding="height", depth_scale=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, ckpt in ((a.height, "metric", height), (a.metric, "height", metric)):
            swapped = save_checkpoint(ckpt, Path(tmp) / "swapped.pt")
            test = runner.test_table(swapped, a.data, "gasket", gates=("close", "open"))
            runner.record({"checkpoint": runner.short_name(name), "inputs": path, "test": test}, a.out)


if __name__ == "__main__":
    main()
