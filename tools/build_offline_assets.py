"""Build what the project ships for offline use: the synthetic data set (not committed), one `lite` checkpoint
per synthetic category with its evaluation JSON, checkpoints/README.md with the results table, and samples/.

    python tools/build_offline_assets.py --data data/synthetic                        # everything
    python tools/build_offline_assets.py --skip-generate --skip-train                 # samples + table only

Runs on the CPU; records the command, wall time and hardware in checkpoints/manifest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from offline_report import replace_block, results_table, write_samples  # noqa: E402

from easynet.atomic import atomic_write_bytes  # noqa: E402
from easynet.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS  # noqa: E402
from easynet.data.synthetic import TUNED, generate  # noqa: E402
from easynet.pipeline import evaluate_category, recalibrate_checkpoint, train_category  # noqa: E402
from easynet.runtime import machine  # noqa: E402

GATES = ("close", "open", "control")


def hardware() -> dict:
    """The machine for the manifest, in its keys (cpu, cores, torch, threads), from easynet.runtime.machine()."""
    m = machine()
    return {"cpu": m["cpu"], "cores": m["cores"], "torch": m["torch"], "threads": m["torch_threads"]}


def log_progress(event) -> None:
    if event.step % 50 == 0 or event.step == event.total:
        terms = " ".join(f"{k} {v:.4f}" for k, v in event.loss.items())
        print(f"  step {event.step}/{event.total} ({event.elapsed:.0f} s, eta {event.eta:.0f} s): {terms}", flush=True)


def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def adopt(source: Path, ckpt: Path, model_cfg, train_cfg) -> dict:
    """Ship a run made elsewhere with the `lite` recipe (refused when its configuration differs from the recipe's
    in anything but the fitted depth scale and a restart's seed); returns its manifest entry."""
    run = load_checkpoint(source)
    fitted = run.model_config.replace(depth_scale=model_cfg.depth_scale)
    same_train = run.train_config is not None and run.train_config.replace(seed=train_cfg.seed) == train_cfg
    if fitted != model_cfg or not same_train:
        raise SystemExit(f"{source} was not trained with the `lite` recipe; train it here instead")
    run.provenance.pop("train_state", None)
    run.provenance["adopted_from"] = source.name
    save_checkpoint(run, ckpt, half=True)
    metrics = run.calibration.metrics
    return {
        "command": run.provenance.get("command"),
        "adopted_from": source.name,
        "steps": run.provenance.get("steps"),
        "train_and_calibrate_seconds": run.provenance.get("train_seconds"),
        "depth_blind_seeds": run.provenance.get("depth_blind_seeds", []),
        "alpha": run.calibration.alpha,
        "validation": metrics,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--out", default="checkpoints")
    parser.add_argument("--categories", nargs="+", default=list(TUNED))  # held-out parts are never shipped
    parser.add_argument("--steps", type=int, help="default: the `lite` training preset's")
    parser.add_argument("--size", type=int, default=256, help="rendered image size of the data set")
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--skip-train", action="store_true", help="keep the checkpoints, rebuild samples and table")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="re-fit the calibration of existing checkpoints on validation (with the `lite` preset's gate rule), "
        "then re-evaluate",
    )
    parser.add_argument(
        "--adopt",
        nargs="+",
        default=[],
        metavar="CATEGORY=CHECKPOINT",
        help="ship these runs instead of training again: checkpoints trained with exactly the `lite` recipe (e.g. "
        "by research/recipe_run.py when a recipe change was decided on them); converted to the shipped format, "
        "evaluated and recorded with their own training command",
    )
    parser.add_argument("--samples", default="samples")
    parser.add_argument(
        "--depth-encoding",
        choices=("height", "metric"),
        help="default: the `lite` preset's; metric: heights in metres over one scale fitted on the training split",
    )
    a = parser.parse_args()
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if not a.skip_generate:
        generate(data, categories=a.categories, size=a.size, n_train=a.n_train, seed=a.seed)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"categories": {}}
    command = "python tools/build_offline_assets.py " + " ".join(sys.argv[1:])
    if not a.skip_train:
        manifest["hardware"], manifest["command"] = hardware(), command
        manifest["data"] = {"generator": "easynet.data.synthetic", "size": a.size, "n_train": a.n_train, "seed": a.seed}
    # the `lite` presets are the recipe (`python -m easynet train --preset lite` with no other flags)
    model_cfg, train_cfg = MODEL_PRESETS["lite"], TRAIN_PRESETS["lite"]
    model_cfg = model_cfg.replace(depth_encoding=a.depth_encoding) if a.depth_encoding else model_cfg
    train_cfg = train_cfg.replace(steps=a.steps) if a.steps else train_cfg
    adopted = dict(item.split("=", 1) for item in a.adopt)
    for category in [] if a.skip_train else a.categories:
        ckpt = out / f"{category}.pt"
        t0 = time.time()
        if category in adopted:
            entry = adopt(Path(adopted[category]), ckpt, model_cfg, train_cfg)
        else:
            summary = train_category(
                data,
                category,
                ckpt,
                model_cfg=model_cfg,
                train_cfg=train_cfg,
                device="cpu",
                ship=True,
                preset="lite",
                progress=False,
                callback=log_progress,
            )
            entry = {
                "command": command,
                "steps": summary.steps,
                "train_and_calibrate_seconds": round(time.time() - t0, 1),
                "final_loss": summary.history[-1]["total"] if summary.history else None,
                "alpha": summary.alpha,
                "validation": summary.validation,
            }
        train_s = time.time() - t0
        report, _, _ = evaluate_category(ckpt, data, category, gates=GATES, device="cpu")
        report.checkpoint = ckpt.name
        write_json(out / f"{category}.json", report.to_dict())
        manifest["categories"][category] = {"checkpoint": ckpt.name, **entry}
        write_json(manifest_path, manifest)
        how = f"adopted from {adopted[category]}" if category in adopted else f"{train_s:.0f} s"
        print(f"{category}: {how}, control I-AUROC {report.gates['control']['i_auroc']:.3f}", flush=True)
    for category in a.categories if a.recalibrate else []:
        ckpt = out / f"{category}.pt"
        rule = model_cfg.gate_rule  # the preset's control rule (a decision, not weights: no retraining)
        calibration = recalibrate_checkpoint(ckpt, data, category, half=True, device="cpu", gate_rule=rule)
        report, _, _ = evaluate_category(ckpt, data, category, gates=GATES, device="cpu")
        report.checkpoint = ckpt.name
        write_json(out / f"{category}.json", report.to_dict())
        entry = manifest["categories"][category]
        entry["alpha"] = calibration["alpha"]
        entry["validation"] = {k: v for k, v in calibration.items() if k not in ("checkpoint", "alpha")}
        entry["recalibrated"] = command
        write_json(manifest_path, manifest)
        print(f"{category}: recalibrated, control I-AUROC {report.gates['control']['i_auroc']:.3f}", flush=True)
    shipped = sorted(json.loads(manifest_path.read_text())["categories"])
    write_samples(Path(a.samples), out, shipped, seed=a.seed)
    table, summary = results_table(out, shipped)
    atomic_write_bytes(out / "README.md", table.encode())
    if out.resolve() == (REPO / "checkpoints").resolve():  # the shipped set: its summary goes in the README
        readme = REPO / "README.md"
        atomic_write_bytes(readme, replace_block(readme.read_text(), "results-summary", summary).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
