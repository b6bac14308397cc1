"""How many pixels each part and its synthetic anomalies get in the model input: per category, on training images
only, the object's share of the input (its depth foreground), the median area of the shipped synthesizer's
anomalies and the share of anomaly draws that miss the object (they become clean images). Behind the object-size
entry of research/RECIPE.md. Needs `python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0`.

    python research/object_size.py [--image-size 128] [--resize object] [CATEGORY ...]   # results/object_size.jsonl
"""

from __future__ import annotations

import argparse

import numpy as np
import runner

from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.data.registry import Split, open_dataset
from easynet.data.synthetic import HELD_OUT, TUNED
from easynet.pipeline import fit_metric_scale, loader_options
from easynet.synth import AnomalySynthesizer, placement_region

IMAGES = 10  # evenly spaced training images per part
DRAWS = 20  # forced anomaly draws per image


def measure(data: str, category: str, image_size: int, resize: str = "stretch") -> dict:
    model_cfg = MODEL_PRESETS["lite"].replace(image_size=image_size, resize=resize)
    cfg = fit_metric_scale(data, category, model_cfg, "mvtec3d")
    synth_cfg = TRAIN_PRESETS["lite"].synth
    synthesizer = AnomalySynthesizer(synth_cfg)
    train = open_dataset(data, category, Split.TRAIN, **loader_options(cfg))
    rng = np.random.default_rng(0)
    share, areas, missed = [], [], 0
    for index in np.linspace(0, len(train) - 1, IMAGES).round().astype(int):
        sample = train[int(index)]
        region = placement_region(sample, synth_cfg)
        share.append(float(region.mean()))
        for _ in range(DRAWS):
            out = synthesizer(sample.rgb, sample.depth, region, rng, force=True)
            if out.label:
                areas.append(float(out.mask.sum()))
            else:
                missed += 1
    return {
        "category": category,
        "image_size": image_size,
        **({"resize": resize} if resize != "stretch" else {}),
        "object_share": round(float(np.mean(share)), 3),
        "anomaly_px_median": round(float(np.median(areas)), 1) if areas else 0.0,
        "missed_draws": round(missed / (IMAGES * DRAWS), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("categories", nargs="*", help="default: the tuned and the held-out parts")
    p.add_argument("--data", default=runner.DATA)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--resize", default="stretch", help="ModelConfig.resize (object: the framed input)")
    runner.add_out(p)
    a = p.parse_args()
    for category in a.categories or [*TUNED, *HELD_OUT]:
        runner.record(measure(a.data, category, a.image_size, a.resize), a.out)


if __name__ == "__main__":
    main()
