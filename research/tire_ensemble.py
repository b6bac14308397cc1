"""Exploration, not a rule: do runs that differ only in their seed help each other when their image scores are
averaged? For each checkpoint, the shipped close-gate image scores of the public 25 divided by the checkpoint's
RGB threshold (so that models of different scales can be averaged); then the I-AUROC and bootstrap spread of each
run alone and of their mean. The public 25 judge here, so nothing is chosen by it; it says whether several seeds
are a lever worth a protocol run.

    python research/tire_ensemble.py runs/tire/R2/final.pt runs/tire/R2s1/final.pt

Appends one row to research/results/tire_ensemble.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import runner
from tire_protocol import DATA, bootstrap

from easynet.checkpoint import load_checkpoint
from easynet.metrics import image_auroc
from easynet.pipeline import evaluate_category


def ratios(checkpoint: str, data: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, score / RGB threshold) of the public test images under the close gate."""
    _, test, heads = evaluate_category(checkpoint, data, "tire", gates=["close"], device="cpu")
    labels = np.array([test[i].label for i in range(len(test))])
    return labels, np.asarray(heads.score_rgb, float) / load_checkpoint(checkpoint).calibration.rgb.threshold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", default=DATA)
    a = parser.parse_args()
    runs = {str(Path(c).parent.name): ratios(c, a.data) for c in a.checkpoints}
    labels = next(iter(runs.values()))[0]
    row: dict = {"runs": {}}
    for name, (lab, r) in runs.items():
        assert np.array_equal(lab, labels)
        row["runs"][name] = {"i_auroc": round(image_auroc(labels, r), 4), "bootstrap": bootstrap(labels, r)}
    mean = np.mean([r for _, r in runs.values()], axis=0)
    row["mean_of_ratios"] = {"i_auroc": round(image_auroc(labels, mean), 4), "bootstrap": bootstrap(labels, mean)}
    runner.record(row, "tire_ensemble.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
