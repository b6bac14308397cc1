"""The real-tire protocol (research/REAL_TIRE.md): train a recipe, keep snapshots, and judge each snapshot and the
final model on validation, on the public 25 resampled (bootstrap mean and interval) and per class.

    python research/tire_protocol.py R1 --set cpu_bf16=on --set schedule=cosine --set warmup_steps=120 \\
        --set steps=2400 --set select_every=400
    python research/tire_protocol.py --speed R1 --set cpu_bf16=on --set steps=80   # clean steps/s: run it alone

One row per snapshot and one for the final (selected) model go to research/results/tire_protocol.jsonl.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from runner import configs, record

from easynet.calibrate import calibrate
from easynet.checkpoint import load_checkpoint, save_checkpoint
from easynet.data.registry import Split, open_dataset
from easynet.metrics import bootstrap_image_auroc
from easynet.pipeline import evaluate_category, loader_options, train_category
from easynet.runtime import machine, resolve_device

DATA = "../shared/data/mvtec3d-tire-rgb"
RESAMPLES = 1000
OUT = "tire_protocol.jsonl"


def bootstrap(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> dict[str, float]:
    """I-AUROC over stratified bootstrap resamples: mean and the 5-95 % interval."""
    return {k: round(v, 4) for k, v in bootstrap_image_auroc(labels, scores, RESAMPLES, seed).items()}


def judge(checkpoint: Path, data: str) -> dict:
    """Validation I-AUROC (its calibration), public-25 I-AUROC, P-AUROC, AUPRO, per class, bootstrap."""
    report, test, heads = evaluate_category(checkpoint, data, "tire", gates=["close"], device="cpu")
    close = report.gates["close"]
    labels = np.array([test[i].label for i in range(len(test))])
    ckpt = load_checkpoint(checkpoint)
    return {
        "val_i_auroc": round(ckpt.calibration.metrics.get("i_auroc_close", float("nan")), 4),
        "test_i_auroc": round(close["i_auroc"], 4),
        "test_p_auroc": round(close["p_auroc"], 4),
        "test_aupro": round(close["aupro"], 4),
        "per_class": {k: round(v, 3) for k, v in close["per_defect_i_auroc"].items()},
        "bootstrap": bootstrap(labels, heads.score_rgb),
    }


def snapshot_judge(snapshot: Path, data: str) -> dict:
    """A training snapshot calibrated on validation (as the final model is) and judged."""
    ckpt = load_checkpoint(snapshot)
    model = ckpt.build_model().eval()
    validation = open_dataset(data, "tire", Split.VALIDATION, **loader_options(ckpt.model_config))
    ckpt.calibration = calibrate(model, validation, resolve_device("cpu"), ckpt.train_config.synth)
    save_checkpoint(ckpt, snapshot)
    return judge(snapshot, data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--work", default="runs/tire")
    parser.add_argument("--every", type=int, default=400, help="keep a snapshot every N steps for the curve")
    parser.add_argument("--speed", action="store_true", help="only time steps/s (run it with nothing else running)")
    a = parser.parse_args()
    model_cfg, train_cfg = configs(a.set, "base")
    work = Path(a.work) / a.name
    work.mkdir(parents=True, exist_ok=True)
    out = work / "final.pt"
    marks: dict[int, float] = {}

    def follow(event) -> None:
        marks[event.step] = event.elapsed
        if not a.speed and event.step % a.every == 1 and event.step > 1 and out.is_file():
            shutil.copy(out, work / f"step{event.step - 1}.pt")  # the snapshot saved after the previous step

    if a.speed:
        train_cfg = train_cfg.replace(select_every=0)
    else:
        train_cfg = train_cfg.replace(checkpoint_every=a.every)
    start = time.time()
    summary = train_category(
        a.data, "tire", out, preset="base", model_cfg=model_cfg, train_cfg=train_cfg, callback=follow, progress=False
    )
    wall = time.time() - start
    steps = sorted(marks)
    warm = steps[min(20, len(steps) - 1)]
    speed = (steps[-1] - warm) / max(marks[steps[-1]] - marks[warm], 1e-9)
    row = {"name": a.name, "settings": a.set, "steps": summary.steps, "steps_per_s": round(speed, 3)}
    row |= {"wall_min": round(wall / 60, 2), "machine": machine()["cpu"]}
    if a.speed:
        record({**row, "kind": "speed"}, OUT)
        return 0
    for snap in sorted(work.glob("step*.pt"), key=lambda p: int(p.stem[4:])):
        record({**row, "kind": "snapshot", "step": int(snap.stem[4:]), **snapshot_judge(snap, a.data)}, OUT)
    selected = load_checkpoint(out).provenance.get("selected_step")
    record({**row, "kind": "final", "selected_step": selected, **judge(out, a.data)}, OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
