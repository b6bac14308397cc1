"""Fine-tuning never silently makes a model worse: each shipped checkpoint fine-tuned on its own category with the
Fine-tune tab's default (200 steps, batch 4; easynet.pipeline.train_job) and two seeds, its validation I-AUROC
against its parent's on the same validation data.

    python benchmarks/finetune_guard.py --data data/synthetic

Writes benchmarks/finetune_guard.json and benchmarks/FINETUNE.md. Target: no fine-tune loses more than 0.01.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from easynet.pipeline import train_job
from easynet.results import WORSE_TOLERANCE, headline
from easynet.runtime import machine

STEPS, BATCH = 200, 4  # easynet.pipeline.FINETUNE_STEPS (the tab's length from a model), app/jobs.py Job.batch_size
SEEDS = (1, 2)


def run(data: Path, checkpoints: Path, steps: int, seeds: tuple[int, ...]) -> list[dict]:
    rows = []
    for path in sorted(checkpoints.glob("*.pt")):
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.time()
                summary = train_job(
                    data, path.stem, Path(tmp) / "ft.pt", steps=steps, batch_size=BATCH, init_from=path, seed=seed
                )
                losses = [h["total"] for h in summary.history]
            rows.append(
                {
                    "checkpoint": path.name,
                    "seed": seed,
                    "steps": steps,
                    "parent": round(headline(summary.parent_validation), 4),
                    "fine_tuned": round(headline(summary.validation), 4),
                    "first_loss": round(losses[0], 4),
                    "max_loss": round(max(losses), 4),
                    "last_loss": round(losses[-1], 4),
                    "worse": bool(summary.worse_than_parent()),
                    "seconds": round(time.time() - start, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def report(rows: list[dict], info: dict) -> str:
    lines = [
        "| checkpoint | seed | parent val I-AUROC | fine-tuned | change | loss first / max / last | marked worse |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        change = r["fine_tuned"] - r["parent"]
        lines.append(
            f"| {r['checkpoint']} | {r['seed']} | {r['parent']:.3f} | {r['fine_tuned']:.3f} | {change:+.3f} | "
            f"{r['first_loss']:.3f} / {r['max_loss']:.3f} / {r['last_loss']:.3f} | {'yes' if r['worse'] else 'no'} |"
        )
    worst = min(r["fine_tuned"] - r["parent"] for r in rows)
    met = "met" if worst >= -WORSE_TOLERANCE else "**missed**"
    return (
        "\n".join(lines)
        + f"\n\nLargest loss of validation I-AUROC: {-worst:.3f} (target <= {WORSE_TOLERANCE}: {met}). "
        + f"Measured on {info['cpu']}, {info['cores']} cores.\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", default="benchmarks")
    a = parser.parse_args()
    rows = run(Path(a.data), Path(a.checkpoints), a.steps, SEEDS)
    info = machine()
    Path(a.out, "finetune_guard.json").write_text(json.dumps({"rows": rows, "machine": info}, indent=1) + "\n")
    text = (
        "# Fine-tuning a shipped model on its own category\n\n"
        "Written by `python benchmarks/finetune_guard.py --data data/synthetic`: the Fine-tune tab's default (200 "
        "steps, batch 4) from each shipped checkpoint, two seeds; validation I-AUROC (control gate) of the parent "
        "and of the fine-tuned model on the same validation images and synthetic anomalies. A fine-tune starts at the "
        "learning rate its parent's training ended at, warmed up over 10 % of its steps "
        "(`easynet.pipeline.finetune_recipe`).\n\n" + report(rows, info)
    )
    Path(a.out, "FINETUNE.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
