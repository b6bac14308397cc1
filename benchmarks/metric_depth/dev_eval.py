"""Test table of existing checkpoints on a dev split (rendered defects of another data seed, never the
reported test split): the dev numbers of the shipped checkpoints for the two-seed rule in benchmarks/RECIPE.md.

    python benchmarks/metric_depth/dev_eval.py gasket=checkpoints/gasket.pt tablet=checkpoints/tablet.pt \
        --dev data/dev >> benchmarks/metric_depth/dev_shipped.jsonl

One JSON line per checkpoint: {"category", "checkpoint", "encoding", "dev": {gate: [I-AUROC, per defect]}}.
"""

from __future__ import annotations

import argparse
import json

from easynet.checkpoint import load_checkpoint
from easynet.pipeline import evaluate_category


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="CATEGORY=CHECKPOINT")
    p.add_argument("--dev", default="data/dev")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    for run in a.runs:
        category, _, path = run.partition("=")
        report = evaluate_category(path, a.dev, category, device=a.device)[0]
        encoding = load_checkpoint(path).model_config.depth_encoding
        row = {"category": category, "checkpoint": path, "encoding": encoding, "dev": report.i_auroc_table()}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
