"""Real-data results and ablation on MVTec 3D-AD (RGB-only track, e.g. the tire category).

Each variant trains with `easynet train`'s own front door (pipeline.train_category), selects and calibrates on
the validation split (clean images plus synthetic anomalies), then is evaluated once on the test images. The
recipe was chosen on validation; the test columns are reported, never used to choose.

    python benchmarks/real_data.py --data ../shared/data/mvtec3d-tire-rgb            # the recipe (`base`)
    python benchmarks/real_data.py --data DIR --variants no_letterbox,draem_only --steps 1000   # ablation rows

Results are merged into benchmarks/real_data.json (one row per variant and length) and the table
benchmarks/REAL_DATA.md is rewritten from it. Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from easynet.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_JSON = Path(__file__).with_name("real_data.json")
OUTPUT_MD = Path(__file__).with_name("REAL_DATA.md")
PAPER_I_AUROC = {"tire": 0.742}  # EasyNet, pure RGB, the paper's Table 1

# name -> (what it changes, model config changes, train config changes, synth config changes, model preset)
VARIANTS: dict[str, tuple[str, dict, dict, dict, str]] = {
    "base": ("the `base` recipe (`train --preset base`)", {}, {}, {}, "base"),
    "no_position_norm": (
        "raw probability maps: no position-wise normalisation by the clean validation maps",
        {},
        {"position_norm": False},
        {},
        "base",
    ),
    "old_default": (
        "before: `lite` at 128 px stretched, paper lr, DRAEM textures (the issue's command)",
        {"resize": "stretch"},  # `lite` frames the part since; this row keeps the input it was measured with
        {"steps": 800},
        {},
        "lite_rgb",
    ),
    "no_letterbox": ("stretch 600x800 to a square instead of letterbox", {"resize": "stretch"}, {}, {}, "base"),
    "draem_only": (
        "DRAEM textures on Perlin blobs only (no scratches, spots, cut-paste, intensity; raw brightness)",
        {},
        {},
        {
            "shape_weights": (1.0, 0.0, 0.0),
            "fill_weights": (1.0, 0.0, 0.0),
            "match_intensity": False,
            "max_perlin_scale": 6,
        },
        "base",
    ),
    "anywhere": (
        "anomalies anywhere in the image, not on the RGB foreground",
        {},
        {},
        {"rgb_foreground": False},
        "base",
    ),
    "anywhere_raw": (
        "`anywhere` with raw probability maps (no position-wise normalisation)",
        {},
        {"position_norm": False},
        {"rgb_foreground": False},
        "base",
    ),
    "no_selection": ("last weights instead of the best by validation", {}, {"select_every": 0}, {}, "base"),
}


def build_configs(variant: str, steps: int | None) -> tuple[Any, Any, str]:
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS

    _, model_changes, train_changes, synth_changes, preset = VARIANTS[variant]
    if preset == "lite_rgb":
        model_cfg, train_cfg = MODEL_PRESETS["lite"].replace(modality="rgb"), TRAIN_PRESETS["paper"]
        preset = "lite"
    else:
        model_cfg, train_cfg = MODEL_PRESETS[preset], TRAIN_PRESETS[preset]
    model_cfg = model_cfg.replace(**model_changes)
    train_cfg = train_cfg.replace(**train_changes)
    if steps is not None:
        train_cfg = train_cfg.replace(steps=steps)
    if synth_changes:
        train_cfg = train_cfg.replace(synth=dataclasses.replace(train_cfg.synth, **synth_changes))
    return model_cfg, train_cfg, preset


def run_variant(
    data: Path, category: str, variant: str, steps: int | None, workdir: Path, reuse: bool = False
) -> dict[str, Any]:
    """Train (or, with ``reuse``, recalibrate the checkpoint already in ``workdir``), then evaluate once."""
    from easynet.checkpoint import load_checkpoint
    from easynet.metrics import bootstrap_image_auroc
    from easynet.pipeline import evaluate_category, recalibrate_checkpoint, train_category

    model_cfg, train_cfg, preset = build_configs(variant, steps)
    ckpt = workdir / f"{category}_{variant}_{train_cfg.steps}.pt"
    start = time.time()
    if reuse:  # the weights of an earlier run under the current calibration rule (what `easynet calibrate` does)
        validation = recalibrate_checkpoint(ckpt, data, category)
        n_steps = load_checkpoint(ckpt).provenance["steps"]
    else:
        summary = train_category(
            data, category, ckpt, model_cfg=model_cfg, train_cfg=train_cfg, preset=preset, progress=False
        )
        validation, n_steps = summary.validation, summary.steps
    train_s = time.time() - start
    report, test, heads = evaluate_category(ckpt, data, category, gates=["close"])
    gate = report.gates["close"]
    labels = [test[i].label for i in range(len(test))]
    spread = bootstrap_image_auroc(labels, heads.score_rgb, RESAMPLES)  # the close gate's image scores
    prov = load_checkpoint(ckpt).provenance
    train_s = prov.get("train_seconds", train_s) if reuse else train_s
    return {
        "variant": variant,
        "change": VARIANTS[variant][0],
        "category": category,
        "steps": n_steps,
        "train_minutes": round(train_s / 60, 1),
        "steps_per_s": round(n_steps / max(prov.get("train_seconds", train_s), 1e-9), 2),
        "selected_step": prov.get("selected_step"),
        "validation_i_auroc": round(validation.get("i_auroc_close", float("nan")), 4),
        "n_validation": prov.get("n_validation"),
        "test_n_images": report.n_images,
        "test_i_auroc": round(gate["i_auroc"], 4),
        "test_i_auroc_bootstrap": {k: round(v, 4) for k, v in spread.items()},
        "test_p_auroc": round(gate["p_auroc"], 4),
        "test_aupro": round(gate["aupro"], 4),
        "test_per_defect_i_auroc": {k: round(v, 4) for k, v in gate.get("per_defect_i_auroc", {}).items()},
    }


def write_report(rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    lines = [
        "# Real data: MVTec 3D-AD, RGB only",
        "",
        "Written by `benchmarks/real_data.py` (do not edit by hand). Train on `train`, select and calibrate on",
        "`validation` (clean images + synthetic anomalies), report on the test images. Only the validation",
        "column was used to choose the recipe; the test columns are the 25 public test images (5 per class). With",
        "5 good and 20 anomalous images, one good image scored above every anomaly costs 0.2 of I-AUROC and one",
        "swapped pair 0.01: read differences under ~0.05 as noise. Training wall times were measured with other",
        "work on the machine at a lower priority (an idle machine is a little faster), except where a note says",
        "nothing else ran. The length, schedule and precision of today's `base` (3200 steps) were chosen by the",
        "protocol of [research/REAL_TIRE.md](../research/REAL_TIRE.md), which also resamples the public 25 (bootstrap",
        "spread), draws the time-to-quality curve and measures where the recipe fails on real defects (per class,",
        "position-wise normalisation on and off, the border band); the 5000-step `base` rows are the recipe before.",
        "The resampled column draws the good and the defective test images with replacement within their groups,",
        f"{RESAMPLES} times: the mean I-AUROC and its 5-95 % interval (rows measured before it existed show -).",
        "",
        f"Hardware: {machine.get('cores')} cores (the CPU of each row in its last column), torch "
        f"{machine.get('torch')} ({machine.get('torch_threads')} threads), no GPU.",
        "",
        "| variant | what changes | steps | train min | steps/s | val I-AUROC | test I-AUROC | test I-AUROC resampled "
        "| test P-AUROC | test AUPRO@0.3 | per defect (test I-AUROC) | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["test_per_defect_i_auroc"].items()))
        change = VARIANTS.get(r["variant"], (r["change"],))[0] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(
            f"| {r['variant']} | {change} | {r['steps']} | {r['train_minutes']} | {r['steps_per_s']} "
            f"| {r['validation_i_auroc']:.3f} | {r['test_i_auroc']:.3f} | {_spread(r)} | {r['test_p_auroc']:.3f} "
            f"| {r['test_aupro']:.3f} | {per} | {r.get('machine', '')} |"
        )
    paper = ", ".join(f"{k} {v}" for k, v in PAPER_I_AUROC.items())
    lines += ["", f"Paper (EasyNet, pure RGB, Table 1): {paper}.", ""]
    atomic_write_text(OUTPUT_MD, "\n".join(lines))


def _spread(r: dict[str, Any]) -> str:
    b = r.get("test_i_auroc_bootstrap")
    return f"{b['mean']:.3f} [{b['p5']:.2f}, {b['p95']:.2f}]" if b else "-"


README = ROOT / "README.md"
README_BEGIN, README_END = "<!-- real-data:begin -->", "<!-- real-data:end -->"
RESAMPLES = 1000  # stratified bootstrap of the test images (research/REAL_TIRE.md's protocol)
TARGETS = {"test_i_auroc": 0.742, "test_p_auroc": 0.90, "test_aupro": 0.70}  # the targets (paper, Table 1)


def update_readme(rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    """README's real-data block: the shipped `base` recipe's row against the targets."""
    from easynet.config import TRAIN_PRESETS

    recipe = [r for r in rows if r["variant"] == "base" and r["steps"] == TRAIN_PRESETS["base"].steps]
    if not recipe or README_BEGIN not in README.read_text():
        return
    r = recipe[0]
    lines = [
        f"| {r['category']}, `base` ({r['steps']} steps, {r['train_minutes']} min on {machine.get('cores')} cores, "
        f"{machine.get('cpu')}) | measured | target | met |",
        "|---|---|---|---|",
    ]
    names = {"test_i_auroc": "I-AUROC", "test_p_auroc": "P-AUROC", "test_aupro": "AUPRO@0.3"}
    for key, target in TARGETS.items():
        ok = "yes" if r[key] >= target else f"**no** ({r[key] - target:+.3f})"
        lines.append(
            f"| {names[key]} on the {r['test_n_images']} public test images | {r[key]:.3f} | >= {target} | {ok} |"
        )
    lines.append(f"| I-AUROC on the public test images resampled {RESAMPLES} times: mean [5-95 %] | {_spread(r)} | | |")
    lines.append(
        f"| I-AUROC on validation (clean + synthetic, what selection saw) | {r['validation_i_auroc']:.3f} | | |"
    )
    text = README.read_text()
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write_text(README, head + README_BEGIN + "\n" + "\n".join(lines) + "\n" + README_END + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mvtec3d-tire-rgb"))
    parser.add_argument("--category", default="tire")
    parser.add_argument("--variants", default="base", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, help="override the training length (ablation rows)")
    parser.add_argument("--workdir", help="where checkpoints go (default: a temporary folder)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report and README from the JSON")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="recalibrate and evaluate the checkpoints already in --workdir instead of training them again "
        "(train minutes are then the training part of the earlier run)",
    )
    a = parser.parse_args(argv)
    if a.report_only and OUTPUT_JSON.is_file():
        saved = json.loads(OUTPUT_JSON.read_text())
        write_report(saved["rows"], saved["machine"])
        update_readme(saved["rows"], saved["machine"])
        return 0
    data = Path(a.data)
    if not (data / a.category).is_dir():
        print(f"skipped: no {a.category} data under {data} (real MVTec 3D-AD data is not shipped)")
        return 0
    from easynet.runtime import machine

    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(a.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in names:
            row = run_variant(data, a.category, name, a.steps, workdir, a.reuse)
            row["note"] = "weights of an earlier run, recalibrated" if a.reuse else row.get("note")
            print(json.dumps(row), flush=True)
            before = json.loads(OUTPUT_JSON.read_text()) if OUTPUT_JSON.is_file() else {"rows": [], "machine": {}}
            rows = before["rows"]  # other runs' rows, each with the CPU it ran on
            for r in rows:
                r.setdefault("machine", before["machine"].get("cpu"))
            rows = [r for r in rows if (r["variant"], r["steps"], r["category"]) != (name, row["steps"], a.category)]
            info = machine()
            rows.append(row | {"machine": info["cpu"]})
            rows.sort(key=lambda r: (r["category"], r["variant"] != "base", r["variant"], r["steps"]))
            atomic_write_text(OUTPUT_JSON, json.dumps({"machine": info, "rows": rows}, indent=2))
            write_report(rows, info)
            update_readme(rows, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
