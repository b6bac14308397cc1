"""One training run of the synthetic RGB-D recipe with a few of its choices changed, then its test table: the
experiment behind a recipe change (benchmarks/RECIPE.md). Needs
`python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python benchmarks/recipe_run.py foam_block --dome 0.5 --work runs/recipe     # one JSON line per run
    python benchmarks/recipe_run.py gasket --encoding metric --kinds 0.25,0.25,0.5
    python benchmarks/recipe_run.py tablet --depth-view 1
    python benchmarks/recipe_run.py tablet --encoding metric --restarts 1 --dev data/dev   # + a dev split

A dev split (rendered defects from another data seed, so no reported test image is used to decide):
`python -c "from easynet.data.synthetic import generate, TUNED; generate('data/dev', TUNED, 256, 0, 0, 24, 24, 1)"`.

The base is the `lite` model preset with the `lite` training preset (the shipped recipe); each flag changes
one choice. Prints {"category", "changes", "seconds", "validation", "test": {gate: [I-AUROC, per defect]}}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from easynet.checkpoint import load_checkpoint
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS, ModelConfig
from easynet.pipeline import evaluate_category, train_category


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("category")
    p.add_argument("--work", default="runs/recipe")
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--encoding", choices=("height", "metric"), help="depth encoding (default: the preset's)")
    p.add_argument("--dome", type=float, help="weight of dome-profiled depth anomalies (rim: 1 - dome)")
    p.add_argument("--kinds", help="weights of synthetic anomaly kinds both,rgb,depth (default 0.5,0.25,0.25)")
    p.add_argument("--rgb-dropout", type=float, help="TrainConfig.fused_rgb_dropout (modality dropout)")
    p.add_argument("--depth-view", type=float, help="TrainConfig.fused_depth_view_weight (depth-only view loss)")
    p.add_argument("--warmup", type=float, help="TrainConfig.fused_attention_warmup (fused SE held at 0.5 first)")
    p.add_argument("--residual", action="store_true", help="ModelConfig.depth_residual (reconstruction residual)")
    p.add_argument("--depth-head", action="store_true", help="ModelConfig.depth_head (training-only depth head)")
    p.add_argument("--restarts", type=int, help="TrainConfig.depth_restarts (retrain when depth-blind on validation)")
    p.add_argument("--mm", help="SynthConfig.depth_amplitude_mm LO,HI for metric depth (default: the preset's)")
    p.add_argument("--amplitude", help="SynthConfig.depth_amplitude LO,HI in units of the scale (default 0.1,0.5)")
    p.add_argument("--image-size", type=int, help="ModelConfig.image_size (pixels per object side scale with it)")
    p.add_argument("--resize", help="ModelConfig.resize, e.g. object (a square around the depth foreground)")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--dev", help="also evaluate on this root's test split (a dev set: data seed 1, never reported)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (several seeds per arm fit in minutes on a GPU)")
    a = p.parse_args()
    changes: dict[str, object] = {}
    model_cfg = _model_config(a, changes)
    train_cfg = TRAIN_PRESETS["lite"]
    if a.dome is not None:
        synth = dataclasses.replace(train_cfg.synth, depth_profile_weights=(1.0 - a.dome, a.dome))
        train_cfg = train_cfg.replace(synth=synth)
        changes["dome"] = a.dome
    if a.kinds:
        kinds = tuple(float(w) for w in a.kinds.split(","))
        train_cfg = train_cfg.replace(synth=dataclasses.replace(train_cfg.synth, kind_weights=kinds))
        changes["kinds"] = a.kinds
    if a.rgb_dropout is not None:
        train_cfg = train_cfg.replace(fused_rgb_dropout=a.rgb_dropout)
        changes["rgbdrop"] = a.rgb_dropout
    if a.depth_view is not None:
        train_cfg = train_cfg.replace(fused_depth_view_weight=a.depth_view)
        changes["depthview"] = a.depth_view
    if a.warmup is not None:
        train_cfg = train_cfg.replace(fused_attention_warmup=a.warmup)
        changes["warmup"] = a.warmup
    if a.restarts is not None:
        train_cfg = train_cfg.replace(depth_restarts=a.restarts)
        changes["restarts"] = a.restarts
    if a.mm:
        mm = tuple(float(v) for v in a.mm.split(","))
        train_cfg = train_cfg.replace(synth=dataclasses.replace(train_cfg.synth, depth_amplitude_mm=mm))
        changes["mm"] = a.mm
    if a.amplitude:
        amplitude = tuple(float(v) for v in a.amplitude.split(","))
        train_cfg = train_cfg.replace(synth=dataclasses.replace(train_cfg.synth, depth_amplitude=amplitude))
        changes["amplitude"] = a.amplitude
    for name in ("steps", "seed"):  # the seed is part of the file name, so seeds of one arm do not overwrite
        if getattr(a, name) is not None:
            train_cfg = train_cfg.replace(**{name: getattr(a, name)})
            changes[name] = getattr(a, name)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = "_".join(f"{k}{v}" for k, v in changes.items()) or "base"
    out = work / f"{a.category}_{tag}.pt"
    start = time.time()
    summary = train_category(
        a.data,
        a.category,
        out,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        device=a.device,
        preset="lite",
        progress=False,
    )
    report, _, _ = evaluate_category(out, a.data, a.category, device=a.device)
    test = report.i_auroc_table()
    row = {"category": a.category, "changes": changes, "seconds": round(time.time() - start)}
    row["depth_blind_seeds"] = load_checkpoint(out).provenance.get("depth_blind_seeds", [])
    if a.dev:
        row["dev"] = evaluate_category(out, a.dev, a.category, device=a.device)[0].i_auroc_table()
    print(json.dumps({**row, "validation": summary.validation, "test": test}), flush=True)


def _model_config(a: argparse.Namespace, changes: dict[str, object]) -> ModelConfig:
    """The `lite` model preset with the flags' architecture changes; each is recorded in ``changes`` (in order)."""
    model_cfg = MODEL_PRESETS["lite"]
    if a.encoding:
        model_cfg = model_cfg.replace(depth_encoding=a.encoding)
        changes["encoding"] = a.encoding
    if a.residual:
        model_cfg = model_cfg.replace(depth_residual=True)
        changes["residual"] = 1
    if a.depth_head:
        model_cfg = model_cfg.replace(depth_head=True)
        changes["depthhead"] = 1
    if a.image_size:
        model_cfg = model_cfg.replace(image_size=a.image_size)
        changes["size"] = a.image_size
    if a.resize:
        model_cfg = model_cfg.replace(resize=a.resize)
        changes["resize"] = a.resize
    return model_cfg


if __name__ == "__main__":
    main()
