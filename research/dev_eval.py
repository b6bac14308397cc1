"""Test table of existing checkpoints on a dev split (rendered defects of another data seed, never the
reported test split): the dev numbers of the shipped checkpoints for the two-seed rule in research/RECIPE.md.

    python research/dev_eval.py gasket=checkpoints/gasket.pt tablet=checkpoints/tablet.pt \
        --dev data/dev --out dev_shipped.jsonl

One JSON line per checkpoint: {"category", "checkpoint", "encoding", "dev": {gate: [I-AUROC, per defect]}}.
"""

from __future__ import annotations

import argparse

import runner

from easynet.checkpoint import load_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="CATEGORY=CHECKPOINT")
    p.add_argument("--dev", default="data/dev")
    p.add_argument("--device", default="cpu")
    runner.add_out(p)
    a = p.parse_args()
    for category, path in runner.runs(a.runs):
        encoding = load_checkpoint(path).model_config.depth_encoding
        dev = runner.test_table(path, a.dev, category, device=a.device)
        runner.record({"category": category, "checkpoint": path, "encoding": encoding, "dev": dev}, a.out)


if __name__ == "__main__":
    main()
