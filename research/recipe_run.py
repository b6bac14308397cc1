"""One training run of the synthetic RGB-D recipe with a few of its choices changed, then its test table: the
experiment behind a recipe change (research/RECIPE.md). Needs
`python -m easynet synth data/synthetic --size 256 --n-train 100 --seed 0` first.

    python research/recipe_run.py gasket --encoding metric --kinds 0.25,0.25,0.5 --work runs/recipe
    python research/recipe_run.py tablet --set synth.depth_amplitude=0.2,1.0 --set lr=1e-3
    python research/recipe_run.py tablet --encoding metric --restarts 1 --dev data/dev   # + a dev split

A dev split (rendered defects from another data seed, so no reported test image is used to decide):
`python -c "from easynet.data.synthetic import generate, TUNED; generate('data/dev', TUNED, 256, 0, 0, 24, 24, 1)"`.

The base is the `lite` model preset with the `lite` training preset (the shipped recipe); each flag changes one
choice, and `--set KEY=VALUE` any setting by name, as `easynet train --set` (an unknown key is refused with the
list of settings). Each run is one JSON line {"category", "changes", "seconds", "depth_blind_seeds",
["dev"], "validation", "test": {gate: [I-AUROC, per defect]}}, printed and appended to results/recipe_runs.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import runner

from easynet.checkpoint import load_checkpoint

# flag -> (the setting it changes, its key in a row's "changes"; the keys of recipe_runs.jsonl's earlier rows)
FLAGS = {
    "encoding": ("depth_encoding", "encoding"),
    "image_size": ("image_size", "size"),
    "resize": ("resize", "resize"),
    "kinds": ("synth.kind_weights", "kinds"),
    "restarts": ("depth_restarts", "restarts"),
    "amplitude": ("synth.depth_amplitude", "amplitude"),
    "steps": ("steps", "steps"),
    "seed": ("seed", "seed"),  # the seed is part of the file name, so seeds of one arm do not overwrite
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("category")
    p.add_argument("--work", default="runs/recipe")
    p.add_argument("--data", default=runner.DATA)
    p.add_argument("--encoding", help="ModelConfig.depth_encoding: height, metric or z_minmax")
    p.add_argument("--image-size", type=int, help="ModelConfig.image_size")
    p.add_argument("--resize", help="ModelConfig.resize, e.g. object (a square around the depth foreground)")
    p.add_argument("--kinds", help="SynthConfig.kind_weights both,rgb,depth (weights of the synthetic anomaly kinds)")
    p.add_argument("--restarts", type=int, help="TrainConfig.depth_restarts (retrain when depth-blind on validation)")
    p.add_argument("--amplitude", help="SynthConfig.depth_amplitude LO,HI in units of the depth scale")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other setting (repeatable)")
    p.add_argument("--dev", help="also evaluate on this root's test split (a dev set: data seed 1, never reported)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (several seeds per arm fit in minutes on a GPU)")
    runner.add_out(p, "recipe_runs.jsonl")
    a = p.parse_args()
    changes: dict[str, object] = {}
    settings = []
    for flag, (setting, key) in FLAGS.items():
        if getattr(a, flag) is not None:
            changes[key] = getattr(a, flag)
            settings.append(f"{setting}={getattr(a, flag)}")
    for setting in a.set:
        key, _, value = setting.partition("=")
        changes[key] = value
        settings.append(setting)
    model_cfg, train_cfg = runner.configs(settings)
    tag = "_".join(f"{k}{v}" for k, v in changes.items()) or "base"
    out = Path(a.work) / f"{a.category}_{tag}.pt"
    summary, seconds = runner.train(a.data, a.category, out, model_cfg, train_cfg, device=a.device)
    row = {"category": a.category, "changes": changes, "seconds": seconds}
    row["depth_blind_seeds"] = load_checkpoint(out).provenance.get("depth_blind_seeds", [])
    if a.dev:
        row["dev"] = runner.test_table(out, a.dev, a.category, device=a.device)
    row["validation"] = summary.validation
    row["test"] = runner.test_table(out, a.data, a.category, device=a.device)
    runner.record(row, a.out)


if __name__ == "__main__":
    main()
