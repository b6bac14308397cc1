"""Training throughput: steps/s of the real training loop (data loading, synthetic anomalies, forward, losses,
backward, Adam) for `lite` (its 128 px, batch 8, the `lite` training preset) on one synthetic category, with
channels-last memory format on (the default) and off.

    python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0     # once
    python benchmarks/train_speed.py [--category gasket] [--steps 40]            # writes train_speed.json

Steps before WARMUP are not timed. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

WARMUP = 5
OUTPUT = Path(__file__).with_name("train_speed.json")


def steps_per_s(data: str, category: str, steps: int, channels_last: bool) -> float:
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
    from easynet.data.registry import Split, open_dataset
    from easynet.pipeline import loader_options
    from easynet.train import train

    model_cfg = MODEL_PRESETS["lite"]
    samples = open_dataset(data, category, Split.TRAIN, **loader_options(model_cfg))
    cfg = TRAIN_PRESETS["lite"].replace(steps=steps, channels_last=channels_last)
    marks: dict[int, float] = {}

    def note(event) -> None:
        marks[event.step] = event.elapsed

    train(model_cfg, cfg, samples, device="cpu", progress=False, callback=note)
    return (steps - WARMUP) / (marks[steps] - marks[WARMUP])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--category", default="gasket")
    p.add_argument("--steps", type=int, default=40)
    a = p.parse_args()
    from easynet.bench import machine
    from easynet.config import TRAIN_PRESETS

    rows = {
        layout: round(steps_per_s(a.data, a.category, a.steps, layout == "channels_last"), 3)
        for layout in ("contiguous", "channels_last")
    }
    m = machine()
    report = {
        "machine": f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)",
        "load_1m_at_end": round(os.getloadavg()[0], 2),
        "preset": "lite",
        "batch_size": TRAIN_PRESETS["lite"].batch_size,
        "category": a.category,
        "timed_steps": a.steps - WARMUP,
        "steps_per_s": rows,
        "speedup": round(rows["channels_last"] / rows["contiguous"], 2),
    }
    OUTPUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
