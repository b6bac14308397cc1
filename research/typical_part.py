"""Typical-part reference: how far each shipped model's pooled features of every category's images lie from its own
training images, per stream (easynet.typical), and the validation-only choice of the rule (research/TYPICAL.md).

    python research/typical_part.py --out research/results/typical_part_clean.json
    python research/typical_part.py --synthetic --out research/results/typical_part_synthetic.json
    python research/typical_part.py --select research/results/typical_part_clean.json \
        research/results/typical_part_synthetic.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from easynet.calibrate import calibration_set
from easynet.checkpoint import load_checkpoint
from easynet.data.registry import open_dataset
from easynet.evaluate import run_heads
from easynet.inputs import prepare_input
from easynet.pipeline import loader_options
from easynet.typical import StreamReference, TypicalReference

CPU = torch.device("cpu")
SPLITS = ("train", "validation", "test")


def features(model, items) -> tuple[np.ndarray, np.ndarray | None]:
    heads = run_heads(model, items, CPU)
    return heads.pooled_rgb, heads.pooled_depth


def streams(reference: TypicalReference, rgb: np.ndarray, depth: np.ndarray | None) -> dict[str, list[float]]:
    out = {"rgb": [round(float(d), 4) for d in np.atleast_1d(reference.rgb.distance(rgb))]}
    if depth is not None and reference.depth is not None:
        out["depth"] = [round(float(d), 4) for d in np.atleast_1d(reference.depth.distance(depth))]
    return out


def measure(checkpoint: Path, data: Path, samples: Path, tire: Path | None, with_synthetic: bool) -> dict:
    ckpt = load_checkpoint(checkpoint)
    model, cfg = ckpt.build_model().eval(), ckpt.model_config
    own = ckpt.provenance.get("category") or checkpoint.stem
    options = loader_options(cfg)
    train = open_dataset(data, own, "train", **options)
    if with_synthetic:  # the training images and synthetic anomalies of the training recipe (3 per image)
        items, _, _ = calibration_set(model, train, ckpt.train_config.synth if ckpt.train_config else None)
    else:
        items = [train[i] for i in range(len(train))]
    rgb, depth = features(model, items)
    reference = TypicalReference(StreamReference.fit(rgb), None if depth is None else StreamReference.fit(depth))
    out: dict = {"category": own, "categories": {}, "samples": {}, "samples_rgb_only": {}, "tire": None}
    for category in sorted(p.name for p in data.iterdir() if (p / "train").is_dir()):
        rows = {}
        for split in ("validation", "test"):
            ds = open_dataset(data, category, split, **options)
            items = [ds[i] for i in range(len(ds))]
            rgb, depth = features(model, items)
            val_items = None
            if split == "validation" and category == own:  # the calibration set: clean + synthetic anomalies
                val_items, labels, _ = calibration_set(
                    model, ds, ckpt.train_config.synth if ckpt.train_config else None
                )
                v_rgb, v_depth = features(model, val_items)
                rows["calibration"] = {"streams": streams(reference, v_rgb, v_depth), "label": labels.tolist()}
            rows[split] = {
                "streams": streams(reference, rgb, depth),
                "label": [int(s.label) for s in items],
                "defect": [s.defect for s in items],
            }
        out["categories"][category] = rows
    for rgb_path in sorted(samples.glob("*/*_rgb.png")):
        xyz = rgb_path.with_name(rgb_path.name.replace("_rgb.png", "_xyz.tiff"))
        name = f"{rgb_path.parent.name}/{rgb_path.name.removesuffix('_rgb.png')}"
        for key, depth_file in (("samples", xyz), ("samples_rgb_only", None)):
            inputs = prepare_input(rgb_path, depth_file, cfg)
            f_rgb, f_depth = features(model, [inputs])
            out[key][name] = {k: v[0] for k, v in streams(reference, f_rgb, f_depth).items()}
    if tire is not None:
        names = sorted((tire / "tire" / "test" / "good" / "rgb").glob("*.png"))[:5]
        out["tire"] = [streams(reference, *features(model, [prepare_input(p, None, cfg)]))["rgb"][0] for p in names]
    return out


VARIANTS = [
    (f, fit, limit, agg)
    for f in (2, 3, 5)
    for fit in ("clean", "synthetic")
    for limit in ("clean", "cal")
    for agg in ("max", "geo")
]


def typicality_fn(results: dict, factor: float, limit_from: str, agg: str):
    """typicality(model, {stream: distance}) under one candidate rule (limits from the model's own validation)."""
    limits = {}
    for m, d in results.items():
        own = d["categories"][d["category"]]
        src = own["calibration"]["streams"] if limit_from == "cal" else own["validation"]["streams"]
        limits[m] = {k: max(0.5, factor * max(v)) for k, v in src.items()}

    def typicality(m: str, streams: dict) -> float:
        ratios = [streams[k] / limits[m][k] for k in streams if k in limits[m]]
        return max(ratios) if agg == "max" else float(np.exp(np.mean(np.log(ratios))))

    return typicality


def select(paths: dict[str, Path]) -> None:
    """The rule of TYPICAL.md, on validation only: among the variants that flag every other category's validation
    image and none of the model's own validation images or their synthetic anomalies, the one with the largest
    margin on both sides (min(closest other part, 1 / farthest own image))."""
    for factor, fit, limit_from, agg in VARIANTS:
        results = json.loads(paths[fit].read_text())
        t = typicality_fn(results, factor, limit_from, agg)
        closest, farthest = np.inf, 0.0
        for m, d in results.items():
            for c, v in d["categories"].items():
                rows = v["validation"]["streams"]
                if c != d["category"]:
                    closest = min(closest, *(t(m, {k: rows[k][i] for k in rows}) for i in range(len(rows["rgb"]))))
            cal = d["categories"][d["category"]]["calibration"]["streams"]
            farthest = max(farthest, *(t(m, {k: cal[k][i] for k in cal}) for i in range(len(cal["rgb"]))))
        ok = closest > 1 and farthest <= 1
        margin = min(closest, 1 / farthest)
        print(
            f"F={factor} fit={fit} limit={limit_from} {agg}: closest other {closest:.2f}, farthest own "
            f"{farthest:.2f}, {'margin ' + format(margin, '.2f') if ok else 'fails'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--samples", default="samples")
    parser.add_argument("--tire", help="the real tire data root, for photos of a part no model was trained on")
    parser.add_argument("--out", default="research/results/typical_part.json")
    parser.add_argument("--synthetic", action="store_true", help="fit on training images and their synthetic anomalies")
    parser.add_argument(
        "--select",
        nargs=2,
        metavar=("CLEAN_JSON", "SYNTHETIC_JSON"),
        help="only print the validation selection table from the two measurement files",
    )
    a = parser.parse_args()
    if a.select:
        select({"clean": Path(a.select[0]), "synthetic": Path(a.select[1])})
        return 0
    tire = Path(a.tire) if a.tire and Path(a.tire).is_dir() else None
    results = {
        path.stem: measure(path, Path(a.data), Path(a.samples), tire, a.synthetic)
        for path in sorted(Path(a.checkpoints).glob("*.pt"))
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
