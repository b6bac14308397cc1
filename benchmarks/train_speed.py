"""Training throughput: steps/s of the real training loop (data loading, synthetic anomalies, forward, losses,
backward, Adam) for `lite` (its 128 px, batch 8, the `lite` training preset) and for the real-image preset `base`
(RGB, 128 px crops, batch 8) on one synthetic category: contiguous
against channels-last memory (the default), fp32 against bf16 autocast (`TrainConfig.cpu_bf16`, only where the CPU
computes bf16 natively), the share of a step spent making the batch (decoding is cached; synthetic anomalies are
drawn anew every step), and whether bf16 keeps the loss curve within the seed-to-seed noise of fp32.

    python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0     # once
    python benchmarks/train_speed.py [--category gasket] [--steps 40] [--curve-steps 200]   # train_speed.json

Steps before WARMUP are not timed. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

WARMUP = 5
CURVE_TAIL = 50  # the loss curves are compared on the mean of their last this many steps
OUTPUT = Path(__file__).with_name("train_speed.json")


def training_split(data: str, category: str, preset: str):
    """(model config with its depth scale fitted, the training split loaded as that preset loads it)."""
    from easynet.config import MODEL_PRESETS
    from easynet.data.registry import Split, open_dataset
    from easynet.pipeline import fit_metric_scale, loader_options

    model_cfg = fit_metric_scale(data, category, MODEL_PRESETS[preset], "mvtec3d")
    return model_cfg, open_dataset(data, category, Split.TRAIN, **loader_options(model_cfg))


def run(data: str, category: str, steps: int, preset: str = "lite", **changes) -> tuple[float, list[float]]:
    """(steps/s after WARMUP, total loss per step) of one training run of a preset (model and training recipe)
    with TrainConfig ``changes``."""
    from easynet.config import TRAIN_PRESETS
    from easynet.train import train

    model_cfg, samples = training_split(data, category, preset)
    cfg = TRAIN_PRESETS[preset].replace(steps=steps, **changes)
    marks: dict[int, float] = {}

    def note(event) -> None:
        marks[event.step] = event.elapsed

    result = train(model_cfg, cfg, samples, device="cpu", progress=False, callback=note)
    return (steps - WARMUP) / (marks[steps] - marks[WARMUP]), [h["total"] for h in result.history]


def batch_seconds(data: str, category: str, repeats: int = 3) -> float:
    """Seconds to make one training batch (cached decoded images, fresh synthetic anomalies), as the loop does."""
    from easynet.config import TRAIN_PRESETS
    from easynet.train import TrainingSet

    model_cfg, samples = training_split(data, category, "lite")
    cfg = TRAIN_PRESETS["lite"]
    items = TrainingSet(samples, cfg, True, model_cfg.metric_scale)
    for i in range(len(items)):  # first pass decodes and caches, as the first epoch of training does
        items[i]
    start = time.perf_counter()
    for epoch in range(1, repeats + 1):
        items.set_epoch(epoch)
        for i in range(len(items)):
            items[i]
    return (time.perf_counter() - start) / (repeats * len(items)) * cfg.batch_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--category", default="gasket")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--curve-steps", type=int, default=200, help="length of the fp32 / bf16 loss-curve runs")
    a = p.parse_args()
    import torch

    from easynet.config import TRAIN_PRESETS
    from easynet.runtime import machine, native_bf16

    rows = {
        "contiguous": run(a.data, a.category, a.steps, channels_last=False)[0],
        "channels_last": run(a.data, a.category, a.steps)[0],
    }
    # the real-image preset (RGB, random 128 px crops of the 256 px letterboxed image, width 12) on the same images
    base = {
        "contiguous": run(a.data, a.category, a.steps, "base", channels_last=False)[0],
        "channels_last": run(a.data, a.category, a.steps, "base")[0],
    }
    native = native_bf16(torch.device("cpu"))
    report: dict = {}
    if native:
        rows["channels_last_bf16"] = run(a.data, a.category, a.steps, cpu_bf16=True)[0]
        base["channels_last_bf16"] = run(a.data, a.category, a.steps, "base", cpu_bf16=True)[0]
        tail = {}
        for name, changes in {
            "fp32 seed 66": {},
            "fp32 seed 67": {"seed": 67},
            "bf16 seed 66": {"cpu_bf16": True},
        }.items():
            tail[name] = float(np.mean(run(a.data, a.category, a.curve_steps, **changes)[1][-CURVE_TAIL:]))
        noise = abs(tail["fp32 seed 66"] - tail["fp32 seed 67"])
        shift = abs(tail["bf16 seed 66"] - tail["fp32 seed 66"])
        report["loss_curve"] = {
            "steps": a.curve_steps,
            f"mean_total_loss_last_{CURVE_TAIL}": {k: round(v, 4) for k, v in tail.items()},
            "seed_noise": round(noise, 4),
            "bf16_shift": round(shift, 4),
            "bf16_within_noise": shift <= noise,
        }
    step_s = 1 / rows["channels_last"]
    batch_s = batch_seconds(a.data, a.category)
    m = machine()
    report = {
        "machine": f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)",
        "native_bf16": native,
        "load_1m_at_end": round(os.getloadavg()[0], 2),
        "preset": "lite",
        "batch_size": TRAIN_PRESETS["lite"].batch_size,
        "category": a.category,
        "timed_steps": a.steps - WARMUP,
        "steps_per_s": {k: round(v, 3) for k, v in rows.items()},
        "speedup_channels_last": round(rows["channels_last"] / rows["contiguous"], 2),
        "base_steps_per_s": {k: round(v, 3) for k, v in base.items()},
        "batch_making_ms": round(batch_s * 1000, 1),
        "batch_share_of_step": round(batch_s / step_s, 3),
        **report,
    }
    if native:
        report["speedup_bf16"] = round(rows["channels_last_bf16"] / rows["channels_last"], 2)
        report["base_speedup_bf16"] = round(base["channels_last_bf16"] / base["channels_last"], 2)
    OUTPUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
