"""The wrong-model table: every shipped checkpoint against every synthetic category's test split, the shipped
samples and real tire photos (a part no model was trained on), as the product judges them (Predictor verdicts).

    python benchmarks/wrong_part.py --data data/synthetic --tire ../shared/data/mvtec3d-tire-rgb

Writes benchmarks/wrong_part.json and the table in benchmarks/WRONG_PART.md. Counts: a wrong-part image is flagged
when its verdict is UNSURE for the typical-part reason; an own good part is wrongly flagged the same way; ``auto``
is the model AutoPredictor picks. The rule behind the typical-part limit was chosen on validation only
(research/TYPICAL.md).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from easynet.data.registry import open_dataset
from easynet.predict import AutoPredictor, Predictor
from easynet.runtime import machine

ATYPICAL = "does not look like"


def images(data: Path, category: str) -> list[tuple[Path, Path | None, str]]:
    """(rgb, xyz, defect) of a category's test split (the files, as a user would upload them)."""
    test = open_dataset(data, category, "test", image_size=16)
    return [(r.rgb, r.depth, r.defect) for r in test.records]


def flagged(p) -> bool:
    return p.verdict.label == "UNSURE" and ATYPICAL in (p.verdict.reason or "")


def run(data: Path, checkpoints: Path, samples: Path, tire: Path | None) -> dict:
    predictors = {p.stem: Predictor.from_checkpoint(p, "cpu") for p in sorted(checkpoints.glob("*.pt"))}
    own_of = {name: pr.card.category for name, pr in predictors.items()}
    counts: Counter = Counter()
    auto = AutoPredictor(list(predictors.values()))
    categories = sorted(p.name for p in data.iterdir() if (p / "test").is_dir())
    for category in categories:
        for rgb, depth, defect in images(data, category):
            for name, predictor in predictors.items():
                p = predictor.predict(rgb, depth)
                if own_of[name] != category:
                    counts["wrong_test"] += 1
                    counts["wrong_test_flagged"] += flagged(p)
                elif defect == "good":
                    counts["own_good"] += 1
                    counts["own_good_flagged"] += flagged(p)
                else:
                    counts["own_defect"] += 1
                    counts["own_defect_flagged"] += flagged(p)
            if category in own_of.values():
                counts["auto_test"] += 1
                counts["auto_test_right"] += auto.predict(rgb, depth).model == next(
                    n for n, c in own_of.items() if c == category
                )
    sample_rows = []
    for rgb in sorted(samples.glob("*/*_rgb.png")):
        xyz = rgb.with_name(rgb.name.replace("_rgb.png", "_xyz.tiff"))
        owner = rgb.parent.name
        for name, predictor in predictors.items():
            if own_of[name] != owner:
                p = predictor.predict(rgb, xyz)
                counts["wrong_samples"] += 1
                counts["wrong_samples_flagged"] += flagged(p)
                sample_rows.append({"sample": f"{owner}/{rgb.stem}", "model": name, "verdict": p.verdict.label})
        chosen = auto.predict(rgb, xyz)
        counts["auto_samples"] += 1
        counts["auto_samples_right"] += chosen.model == owner
    if tire is not None:
        photos = sorted((tire / "tire").glob("*/*/rgb/*.png"))
        for photo in photos:
            for predictor in predictors.values():
                counts["tire"] += 1
                counts["tire_flagged"] += flagged(predictor.predict(photo, None))
    return {"counts": dict(counts), "samples": sample_rows, "machine": machine()}


def report(result: dict) -> str:
    c = result["counts"]

    def rate(k: str) -> str:
        return f"{c.get(k + '_flagged', c.get(k + '_right', 0))} / {c.get(k, 0)}"

    rows = [
        ("wrong-part test images flagged (every model x every other category)", rate("wrong_test"), ">= 99 %"),
        ("wrong-part sample pairs flagged (16 samples x 3 other models)", rate("wrong_samples"), "all 48"),
        ("real tire photos flagged (no model knows the tire)", rate("tire"), ""),
        ("own good test parts wrongly flagged", rate("own_good"), "<= 1 %"),
        ("own defective test parts flagged as atypical (UNSURE, not NG)", rate("own_defect"), ""),
        ("`auto` picks the right model: test images of the shipped categories", rate("auto_test"), ""),
        ("`auto` picks the right model: samples", rate("auto_samples"), "all 16"),
    ]
    lines = ["| what | count | target |", "|---|---|---|"] + [f"| {a} | {b} | {t} |" for a, b, t in rows]
    m = result["machine"]
    return "\n".join(lines) + f"\n\nMeasured on {m['cpu']}, {m['cores']} cores, torch {m['torch']}.\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--samples", default="samples")
    parser.add_argument("--tire", help="the real tire data root (photos of a part no shipped model knows)")
    parser.add_argument("--out", default="benchmarks")
    a = parser.parse_args()
    start = time.time()
    tire = Path(a.tire) if a.tire and Path(a.tire).is_dir() else None
    result = run(Path(a.data), Path(a.checkpoints), Path(a.samples), tire)
    result["seconds"] = round(time.time() - start, 1)
    out = Path(a.out)
    (out / "wrong_part.json").write_text(json.dumps(result, indent=1) + "\n")
    text = (
        "# Wrong part, wrong model: the typical-part check\n\n"
        "Written by `python benchmarks/wrong_part.py --data data/synthetic --tire ../shared/data/mvtec3d-tire-rgb` "
        "(the synthetic data from `python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0`). "
        "How the limit was chosen, on validation only: [research/TYPICAL.md](../research/TYPICAL.md).\n\n"
        + report(result)
    )
    (out / "WRONG_PART.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
