"""Does the validation set tell a run whose fused head never learned depth? For each CATEGORY=CHECKPOINT: the
fused head's validation I-AUROC on depth-only synthetic anomalies (clean vs depth-only; `calibrate`'s
`i_auroc_by_kind`, recomputed on a copy so the checkpoint is untouched) next to its test I-AUROC on dents (open
gate). Needs `python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python research/depth_blind.py gasket=runs/seed/gasket_metric_67.pt cap=runs/unseen/cap.pt --out depth_blind.jsonl

One JSON line per checkpoint; results/depth_blind.jsonl holds the runs of RECIPE.md and the README
(results/shipped_validation.jsonl: the shipped checkpoints of their day).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import runner

from easynet.checkpoint import load_checkpoint
from easynet.pipeline import recalibrate_checkpoint


def main() -> None:
    a = runner.checkpoints_cli(__doc__)
    for category, path in runner.runs(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "recalibrated.pt"
            metrics = recalibrate_checkpoint(path, a.data, category, out=copy, device="cpu")
            test = runner.test_table(copy, a.data, category, gates=("open",))
        cfg = load_checkpoint(path).model_config
        row = {
            "category": category,
            "checkpoint": runner.short_name(path),
            "depth_encoding": cfg.depth_encoding,
            "resize": cfg.resize,
            "validation_fused_depth_only": metrics["i_auroc_by_kind"]["fused"].get("depth"),
            "depth_blind_note": "depth_note" in metrics,
            "test_open_dent": test["open"][1]["dent"],
            "validation_i_auroc": {g: round(metrics[f"i_auroc_{g}"], 4) for g in ("close", "open", "control")},
        }
        runner.record(row, a.out)


if __name__ == "__main__":
    main()
