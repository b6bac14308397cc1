"""Does the validation set tell a run whose fused head never learned depth? For each CATEGORY=CHECKPOINT: the
fused head's validation I-AUROC on depth-only synthetic anomalies (clean vs depth-only; `calibrate`'s
`i_auroc_by_kind`, recomputed on a copy so the checkpoint is untouched) next to its test I-AUROC on dents (open
gate). Needs `python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python benchmarks/metric_depth/depth_blind.py gasket=runs/seed/gasket_metric_67.pt cap=runs/unseen/cap.pt

Prints one JSON line per checkpoint; benchmarks/metric_depth/depth_blind.jsonl holds the runs of the README.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from easynet.checkpoint import load_checkpoint
from easynet.pipeline import evaluate_category, recalibrate_checkpoint


def main() -> None:
    for arg in sys.argv[1:]:
        category, path = arg.split("=", 1)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "recalibrated.pt"
            metrics = recalibrate_checkpoint(path, "data/synthetic", category, out=copy, device="cpu")
            report, _, _ = evaluate_category(copy, "data/synthetic", category, gates=("open",), device="cpu")
        cfg = load_checkpoint(path).model_config
        row = {
            "category": category,
            "checkpoint": "/".join(Path(path).parts[-2:]),  # its folder tells runs of one name apart
            "depth_encoding": cfg.depth_encoding,
            "resize": cfg.resize,
            "validation_fused_depth_only": metrics["i_auroc_by_kind"]["fused"].get("depth"),
            "depth_blind_note": "depth_note" in metrics,
            "test_open_dent": round(report.gates["open"]["per_defect_i_auroc"]["dent"], 3),
            "validation_i_auroc": {g: round(metrics[f"i_auroc_{g}"], 4) for g in ("close", "open", "control")},
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
