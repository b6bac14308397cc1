"""Held-out synthetic parts: the shipped recipe on parts that no recipe, threshold or design choice was tuned on.

The held-out categories (easynet.data.synthetic.HELD_OUT: `hinge`, `cap`, then `terminal_block`, `biscuit`, then
`hex_nut`, `soap_bar`, then `knob`, `tile` (the judges of object framing, research/RECIPE.md), each pair added
once the earlier ones had been looked at) are trained with the one command
of the shipped checkpoints (`python -m easynet train --preset lite`, no other flags), calibrated on their validation
split and evaluated once on their test split; the shipped checkpoints of the tuned categories are evaluated on
the same data set. Besides I-AUROC per gate and defect kind, the report gives, per defect kind, the fraction of
test images the control gate sent to the fused RGB-D head: stains are colour only, dents geometry only, cuts
both, so a gate that decides sends dents to the fused head and stains to the RGB head.

    python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0     # once: every category
    python benchmarks/unseen_parts.py --data data/synthetic --workdir runs/unseen
    python benchmarks/unseen_parts.py --skip-train --keep-rows   # add parts; rows without a checkpoint kept
    python benchmarks/unseen_parts.py --skip-train --held-out hinge cap   # only these held-out parts
    python benchmarks/unseen_parts.py --seed 70 --skip-tuned --workdir runs/seed70 --report OTHER.md   # a 2nd seed

Writes benchmarks/unseen_parts.json and benchmarks/UNSEEN_PARTS.md (or --report and its .json). Training takes
about 7 minutes per held-out category on 2 CPU cores, twice that when validation calls for the restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easynet.atomic import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_JSON = Path(__file__).with_name("unseen_parts.json")
OUTPUT_MD = Path(__file__).with_name("UNSEEN_PARTS.md")
GATES = ("close", "open", "control")
CROSS_FIT_REPEATS = 10
# Held-out parts that judged one design choice (object framing, research/RECIPE.md): reported as their own set,
# so that the `held out` means stay over parts that decided nothing.
FRAMING_JUDGES = ("knob", "tile")
GROUPS = ("tuned", "held out", "framing judge")


def train_held_out(data: Path, category: str, out: Path, steps: int | None, seed: int | None = None) -> float:
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
    from easynet.pipeline import train_category

    train_cfg = TRAIN_PRESETS["lite"]  # the shipped recipe: `train --preset lite` with no other flags
    if seed is not None:  # `train --seed`
        train_cfg = train_cfg.replace(seed=seed)
    start = time.time()
    train_category(
        data,
        category,
        out,
        model_cfg=MODEL_PRESETS["lite"],
        train_cfg=train_cfg.replace(steps=steps) if steps else train_cfg,
        preset="lite",
        device="cpu",
        progress=False,
    )
    return time.time() - start


def validation_outputs(checkpoint: Path, data: Path, category: str) -> tuple[Any, np.ndarray, np.ndarray, Any]:
    """(the checkpoint's calibration, labels, source image of each item, head outputs) of its calibration set:
    clean validation images and their synthetic anomalies, as `calibrate` builds them."""
    from easynet.calibrate import calibration_set
    from easynet.checkpoint import load_checkpoint
    from easynet.data.registry import open_dataset
    from easynet.evaluate import run_heads
    from easynet.pipeline import loader_options

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model().eval()
    validation = open_dataset(data, category, "validation", format="mvtec3d", **loader_options(ckpt.model_config))
    synth = ckpt.train_config.synth if ckpt.train_config else None
    items, y, source = calibration_set(model, validation, synth)
    heads = run_heads(model, items, torch.device("cpu"), None, ckpt.calibration)
    return ckpt.calibration, y, source, heads


def folds(source: np.ndarray, repeats: int = CROSS_FIT_REPEATS) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Per repeat, both (fit, judge) masks of one random split of the source images into halves (seed 0)."""
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        order = rng.permutation(np.unique(source))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        yield [(np.isin(source, a), np.isin(source, b)) for a, b in (halves, halves[::-1])]


def fold_calibration(cal: Any, y: np.ndarray, heads: Any, fit: np.ndarray) -> Any:
    """``cal`` with both heads' thresholds and heat-map scales, and alpha, fitted on the images where ``fit``."""
    from easynet.calibrate import fit_alpha, head_calibration

    cal = dataclasses.replace(cal)
    cal.rgb = dataclasses.replace(cal.rgb, **head_calibration(y[fit], heads.score_rgb[fit], heads.prob_rgb[fit]))
    cal.fused = dataclasses.replace(
        cal.fused, **head_calibration(y[fit], heads.score_fused[fit], heads.prob_fused[fit])
    )
    cal.alpha = fit_alpha(y[fit], subset(heads, fit), cal)
    return cal


def cross_fitted(checkpoint: Path, data: Path, category: str) -> dict[str, float]:
    """Validation I-AUROC of close, open and both control rules, each image scored with thresholds (and alpha)
    fitted on the other half of the validation images: 2 folds over source images, CROSS_FIT_REPEATS random
    splits, mean. In-sample, alpha is fitted on the very images it is judged on."""
    from easynet.config import GATE_RULES
    from easynet.evaluate import gate_scores
    from easynet.metrics import image_auroc

    calibration, y, source, heads = validation_outputs(checkpoint, data, category)
    rules = {"close": ("close", None), "open": ("open", None), **{r: ("control", r) for r in GATE_RULES}}
    totals: dict[str, list[float]] = {name: [] for name in rules}
    for repeat in folds(source):
        scores = {name: np.zeros(len(y)) for name in totals}
        for fit, held in repeat:
            cal = fold_calibration(calibration, y, heads, fit)
            for name, (mode, rule) in rules.items():
                scores[name][held] = gate_scores(subset(heads, held), cal, mode, rule)[0]
        for name in totals:
            totals[name].append(image_auroc(y, scores[name]))
    return {name: round(float(np.mean(v)), 4) for name, v in totals.items()}


def subset(heads: Any, keep: np.ndarray) -> Any:
    """The head outputs of the images where ``keep`` is True."""
    fields = ("prob_rgb", "prob_fused", "score_rgb", "score_fused", "entropy_rgb", "entropy_fused", "valid")
    return dataclasses.replace(
        heads, **{f: None if getattr(heads, f) is None else getattr(heads, f)[keep] for f in fields}
    )


def measure(checkpoint: Path, data: Path, category: str) -> dict[str, Any]:
    """Test metrics per gate (control under each rule), per defect kind, the control gate's fused fraction per
    defect kind under each rule, and the validation I-AUROC in-sample and cross-fitted."""
    from easynet.checkpoint import load_checkpoint
    from easynet.config import GATE_RULES
    from easynet.evaluate import gate_scores
    from easynet.metrics import image_auroc
    from easynet.pipeline import evaluate_category

    report, test, heads = evaluate_category(checkpoint, data, category, gates=GATES, device="cpu")
    ckpt = load_checkpoint(checkpoint)
    calibration = ckpt.calibration
    defects = np.array([test[i].defect for i in range(len(test))])
    labels = np.array([test[i].label for i in range(len(test))])
    gates = report.gates
    rules: dict[str, Any] = {}
    for rule in GATE_RULES:
        scores, _, used = gate_scores(heads, calibration, "control", rule)
        per = {
            k: image_auroc(labels[(defects == k) | (labels == 0)], scores[(defects == k) | (labels == 0)])
            for k in set(defects.tolist()) - {"good"}
        }
        rules[rule] = {
            "i_auroc": round(image_auroc(labels, scores), 4),
            "per_defect": {k: round(v, 4) for k, v in sorted(per.items())},
            "fused_fraction": {k: round(float(used[defects == k].mean()), 3) for k in sorted(set(defects.tolist()))},
        }
    return {
        "category": category,
        "checkpoint": checkpoint.name,
        "gate_rule": ckpt.model_config.gate_rule,
        "i_auroc": {g: round(gates[g]["i_auroc"], 4) for g in GATES},
        "aupro": {g: round(gates[g]["aupro"], 4) for g in GATES},
        "per_defect": {g: {k: round(v, 4) for k, v in gates[g]["per_defect_i_auroc"].items()} for g in GATES},
        "rules": rules,
        "alpha": round(calibration.alpha, 4),
        "validation": {k: v for k, v in calibration.metrics.items() if not k.startswith("position_norm")},
        "validation_cross_fitted": cross_fitted(checkpoint, data, category),
    }


def kept_note(rows: list[dict[str, Any]]) -> list[str]:
    """The report's line naming the rows carried over from an earlier run (``--keep-rows``), if any."""
    kept = [r for r in rows if r.get("kept")]
    if not kept:
        return []
    machines = sorted({r.get("machine", "an earlier machine") for r in kept})
    return [
        "",
        "Rows kept from an earlier run of this script (`--keep-rows`; their checkpoints were not kept): "
        f"{', '.join(r['category'] for r in kept)}; measured on {' and '.join(machines)}.",
    ]


def write_report(rows: list[dict[str, Any]], machine: str, output_md: Path = OUTPUT_MD) -> None:
    def f(v: float | None) -> str:
        return "n/a" if v is None or v != v else f"{v:.3f}"

    lines = [
        "# Held-out synthetic parts, and the control gate's rule",
        "",
        "Written by `benchmarks/unseen_parts.py` (do not edit by hand). `held out` parts were never used to tune",
        "a recipe, threshold or design choice; `tuned` parts are the shipped ones, whose generator and recipe",
        "were developed together; `framing judge` parts are held out too, but decided one design choice (object",
        "framing, research/RECIPE.md), so they are averaged apart. Test split: 12 good and 12 images per defect",
        "kind (stain = colour only, dent = geometry only, cut = both). One command per part: `python -m easynet",
        "train --preset lite` (the shipped recipe). `control` is each checkpoint's own rule; the ablation scores",
        "the same network outputs under both rules: `entropy` (the paper: fused when H_fused > H_rgb + alpha) and",
        "`score` (the head whose score is the larger multiple of its calibrated threshold).",
        "",
        f"Hardware: {machine}.",
        *kept_note(rows),
        "",
        "## Test I-AUROC",
        "",
        "| part | set | rule | close | open | control | control >= max(open, close) - 0.01 | dent (open / close / "
        "control) | stain (open / close / control) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        i, per = r["i_auroc"], r["per_defect"]
        ok = "yes" if i["control"] >= max(i["open"], i["close"]) - 0.01 else "**no**"
        lines.append(
            f"| {r['category']} | {r['set']} | {r['gate_rule']} | {i['close']:.3f} | {i['open']:.3f} "
            f"| {i['control']:.3f} | {ok} "
            + "".join(
                f"| {per['open'].get(k, float('nan')):.2f} / {per['close'].get(k, float('nan')):.2f} / "
                f"{per['control'].get(k, float('nan')):.2f} "
                for k in ("dent", "stain")
            )
            + "|"
        )
    for group in GROUPS:
        sel = [r for r in rows if r["set"] == group]
        if sel:
            means = {g: np.mean([r["i_auroc"][g] for r in sel]) for g in GATES}
            lines.append(
                f"| **mean, {group}** | | | {means['close']:.3f} | {means['open']:.3f} | {means['control']:.3f} | | | |"
            )
    lines += [
        "",
        "## Gate rule ablation",
        "",
        "Same networks, same calibration; only the control rule differs. Validation is the calibration set (clean",
        "validation images and synthetic anomalies), scored cross-fitted: thresholds and alpha fitted on half of",
        "the validation images, judged on the other half (2 folds, 10 random splits). Fused fraction: the share of",
        "test images of each kind (good / stain / dent / cut) that control sent to the fused head. A third rule,",
        "the score rule with a margin fitted on validation, is research, not the product's: research/gate_margin.py",
        "and research/results/gate_margin.jsonl.",
        "",
        "| part | set | validation, cross-fitted: open / entropy / score | test: entropy / score "
        "| fused fraction, entropy | fused fraction, score |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        v, rules = r["validation_cross_fitted"], r["rules"]
        frac = {
            rule: " / ".join(
                f"{rules[rule]['fused_fraction'].get(k, float('nan')):.2f}" for k in ("good", "stain", "dent", "cut")
            )
            for rule in ("entropy", "score")
        }
        lines.append(
            f"| {r['category']} | {r['set']} | {f(v['open'])} / {f(v['entropy'])} / {f(v['score'])} "
            f"| {f(rules['entropy']['i_auroc'])} / {f(rules['score']['i_auroc'])} "
            f"| {frac['entropy']} | {frac['score']} |"
        )
    for group in GROUPS:
        sel = [r for r in rows if r["set"] == group]
        if sel:
            val = {k: np.mean([r["validation_cross_fitted"][k] for r in sel]) for k in ("open", "entropy", "score")}
            test = {k: np.mean([r["rules"][k]["i_auroc"] for r in sel]) for k in ("entropy", "score")}
            lines.append(
                f"| **mean, {group}** | | {f(val['open'])} / {f(val['entropy'])} / {f(val['score'])} "
                f"| {f(test['entropy'])} / {f(test['score'])} | | |"
            )
    lines += ["", "Targets (issue 13): control >= 0.985 mean; dents >= 0.98; control >= max(open, close).", ""]
    atomic_write_bytes(output_md, "\n".join(lines).encode())


def main() -> int:
    from easynet.data.synthetic import HELD_OUT, TUNED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--workdir", default="runs/unseen", help="where the held-out checkpoints are written")
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"), help="the shipped (tuned) checkpoints")
    parser.add_argument("--steps", type=int, help="default: the `lite` training preset's")
    parser.add_argument("--seed", type=int, help="training seed of the held-out parts (default: the preset's, 66)")
    parser.add_argument("--skip-tuned", action="store_true", help="leave the shipped (tuned) checkpoints out")
    parser.add_argument("--skip-train", action="store_true", help="evaluate held-out checkpoints already trained")
    parser.add_argument(
        "--keep-rows",
        action="store_true",
        help="with --skip-train: a held-out part whose checkpoint is not in the workdir keeps its row from the "
        "existing unseen_parts.json (measured by this script on its checkpoint before)",
    )
    parser.add_argument(
        "--held-out", nargs="+", choices=HELD_OUT, default=list(HELD_OUT), help="the held-out parts (default: all)"
    )
    parser.add_argument(
        "--report",
        default=str(OUTPUT_MD),
        help="the Markdown report to write; its JSON goes beside it (default: benchmarks/UNSEEN_PARTS.md and "
        "unseen_parts.json; another name, e.g. for a second seed, leaves those as they are)",
    )
    a = parser.parse_args()
    output_md = Path(a.report)
    output_json = OUTPUT_JSON if output_md.resolve() == OUTPUT_MD.resolve() else output_md.with_suffix(".json")
    data, work = Path(a.data), Path(a.workdir)
    missing = [c for c in (*TUNED, *a.held_out) if not (data / c).is_dir()]
    if missing:
        print(f"{data} lacks {', '.join(missing)}: run `python -m easynet synth {data} --size 256 --n-train 100`")
        return 1
    work.mkdir(parents=True, exist_ok=True)
    earlier = {}
    if a.keep_rows and output_json.is_file():
        before = json.loads(output_json.read_text())
        earlier = {r["category"]: {"machine": before["machine"], **r} for r in before["rows"] if r["set"] != "tuned"}
    rows = []
    for category in a.held_out:
        ckpt = work / f"{category}.pt"
        if a.skip_train and a.keep_rows and not ckpt.is_file():
            if category not in earlier:
                print(f"{ckpt} is missing and {output_json.name} has no row for {category}: train it first")
                return 1
            rows.append({**earlier[category], "kept": True})
            continue
        if not a.skip_train:
            seconds = train_held_out(data, category, ckpt, a.steps, a.seed)
            print(f"{category}: trained and calibrated in {seconds / 60:.1f} min", flush=True)
        elif not ckpt.is_file():
            print(f"{ckpt} is missing: train it first, or leave {category} out with --held-out")
            return 1
        group = "framing judge" if category in FRAMING_JUDGES else "held out"
        rows.append({**measure(ckpt, data, category), "set": group})
    for category in () if a.skip_tuned else TUNED:
        ckpt = Path(a.checkpoints) / f"{category}.pt"
        if ckpt.is_file():
            rows.append({**measure(ckpt, data, category), "set": "tuned"})
    from easynet.runtime import machine

    m = machine()
    machine = f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), GPU {m['gpu']}"
    atomic_write_bytes(output_json, (json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n").encode())
    write_report(rows, machine, output_md)
    print(output_md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
