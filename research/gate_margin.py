"""A third control rule, measured beside the product's two (benchmarks/UNSEEN_PARTS.md): the score rule with a
margin m fitted on validation. The RGB head is used only where its score / threshold ratio exceeds the fused
head's by more than a factor 1 + m; m = inf is the open gate. Not a library rule: an ablation on the same
network outputs and calibration as benchmarks/unseen_parts.py, with its cross-fitting (thresholds and m fitted on
half of the validation images, judged on the other half, 2 folds x 10 random splits).

    python research/gate_margin.py hinge=runs/unseen/hinge.pt gasket=checkpoints/gasket.pt --out gate_margin.jsonl

One JSON line per checkpoint: validation I-AUROC cross-fitted (margin rule and open gate), the m fitted on the
whole validation set (null: inf, open) and, with that m, test I-AUROC, per defect kind and the share of each
kind sent to the fused head. results/gate_margin.jsonl holds the held-out table's checkpoints (seed 66).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import runner

from easynet.data.synthetic import TUNED
from easynet.evaluate import gate_scores
from easynet.gate import use_fused
from easynet.metrics import image_auroc
from easynet.pipeline import evaluate_category
from easynet.runtime import machine

# the product benchmark's calibration set, folds and per-fold calibration, so both tables share one cross-fitting
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import unseen_parts

MARGINS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, float("inf"))


def margin_scores(heads: Any, cal: Any, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(normalised image scores, used_fused) under the score rule with ``margin``."""
    ratio_rgb, ratio_fused = heads.score_rgb / cal.rgb.threshold, heads.score_fused / cal.fused.threshold
    if margin == float("inf"):  # the open gate
        used = use_fused("open", heads.entropy_rgb, heads.entropy_fused)
    else:
        scaled = ratio_fused * (1 + margin)
        used = use_fused(
            "control", heads.entropy_rgb, heads.entropy_fused, rule="score", ratio_rgb=ratio_rgb, ratio_fused=scaled
        )
    return np.where(used, ratio_fused, ratio_rgb), used


def fit_margin(y: np.ndarray, heads: Any, cal: Any) -> float:
    """The margin with the best I-AUROC on (y, heads); ties go to the smaller margin (the more gating one)."""
    return max(MARGINS, key=lambda m: (image_auroc(y, margin_scores(heads, cal, m)[0]), -m))


def measure(category: str, checkpoint: str, data: Path) -> dict[str, Any]:
    calibration, y, source, heads = unseen_parts.validation_outputs(Path(checkpoint), data, category)
    totals: dict[str, list[float]] = {"margin": [], "open": []}
    for repeat in unseen_parts.folds(source):
        scores = {name: np.zeros(len(y)) for name in totals}
        for fit, held in repeat:
            cal = unseen_parts.fold_calibration(calibration, y, heads, fit)
            margin = fit_margin(y[fit], unseen_parts.subset(heads, fit), cal)
            scores["margin"][held] = margin_scores(unseen_parts.subset(heads, held), cal, margin)[0]
            scores["open"][held] = gate_scores(unseen_parts.subset(heads, held), cal, "open")[0]
        for name in totals:
            totals[name].append(image_auroc(y, scores[name]))
    margin = fit_margin(y, heads, calibration)
    _, test, test_heads = evaluate_category(checkpoint, data, category, gates=("open",), device="cpu")
    defects = np.array([test[i].defect for i in range(len(test))])
    labels = np.array([test[i].label for i in range(len(test))])
    scores, used = margin_scores(test_heads, calibration, margin)
    kinds = sorted(set(defects.tolist()))
    per = {
        k: image_auroc(labels[(defects == k) | (labels == 0)], scores[(defects == k) | (labels == 0)])
        for k in kinds
        if k != "good"
    }
    m = machine()
    return {
        "category": category,
        "set": "tuned"
        if category in TUNED
        else "framing judge"
        if category in unseen_parts.FRAMING_JUDGES
        else "held out",
        "checkpoint": Path(checkpoint).name,
        "margin": None if margin == float("inf") else margin,
        "validation_cross_fitted": {name: round(float(np.mean(v)), 4) for name, v in totals.items()},
        "test": {
            "i_auroc": round(image_auroc(labels, scores), 4),
            "per_defect": {k: round(v, 4) for k, v in per.items()},
            "fused_fraction": {k: round(float(used[defects == k].mean()), 3) for k in kinds},
        },
        "machine": f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), GPU {m['gpu']}",
    }


def main() -> None:
    a = runner.checkpoints_cli(__doc__)
    for category, path in runner.runs(a.runs):
        runner.record(measure(category, path, Path(a.data)), a.out)


if __name__ == "__main__":
    main()
