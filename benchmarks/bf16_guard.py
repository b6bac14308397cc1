"""The bf16 accuracy guard on every shipped checkpoint: test-split I-AUROC and AUPRO per gate in fp32 and bf16,
and the verdicts on the shipped samples (benchmarks/precision_guard.py). Where the CPU has no native bf16 the rounding
is emulated, so the numbers hold for a CPU that has it; only the speed differs.

    python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0     # once
    python benchmarks/bf16_guard.py                                              # writes bf16_guard.json

Exit status 1 when a checkpoint fails the guard.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from precision_guard import guard_checkpoint

from easynet.runtime import machine

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path(__file__).with_name("bf16_guard.json")


def shipped_samples(category: str) -> list[tuple[str, Path, Path]]:
    folder = ROOT / "samples" / category
    return [
        (
            f"{category}/{rgb.name.removesuffix('_rgb.png')}",
            rgb,
            rgb.with_name(rgb.name.replace("_rgb.png", "_xyz.tiff")),
        )
        for rgb in sorted(folder.glob("*_rgb.png"))
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    a = p.parse_args()
    manifest = json.loads((Path(a.checkpoints) / "manifest.json").read_text())
    rows = []
    for category in sorted(manifest["categories"]):
        ckpt = Path(a.checkpoints) / f"{category}.pt"
        result = guard_checkpoint(ckpt, a.data, category, shipped_samples(category), device="cpu")
        rows.append(result.to_dict() | {"checkpoint": ckpt.name})
        print(json.dumps(rows[-1]), flush=True)
    m = machine()
    report = {"machine": f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}", "rows": rows}
    OUTPUT.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
