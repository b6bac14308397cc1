"""Command line: `python -m easynet <command>`. Thin: parse arguments, build configs, call the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from easynet.config import GATE_RULES, MODEL_PRESETS, PRECISIONS, RESIZE_MODES, TRAIN_PRESETS, config_to_dict
from easynet.errors import EasyNetError, InputError
from easynet.results import EvalReport


def _write_json(path: str | Path, data: Any) -> None:
    from easynet.atomic import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --- train ----------------------------------------------------------------------------------------
def cmd_train(a: argparse.Namespace) -> int:
    from easynet.pipeline import default_train_config, train_category

    changes = {
        "layers": a.layers,
        "image_size": a.image_size,
        "modality": a.modality,
        "depth_encoding": a.depth_encoding,
        "resize": a.resize,
        "depth_residual": None if a.depth_residual is None else a.depth_residual == "on",
        "depth_head": None if a.depth_head is None else a.depth_head == "on",
    }
    given = {k: v for k, v in changes.items() if v is not None}
    start = a.resume or a.init
    if start:  # the checkpoint's architecture; options given here must agree with it
        from easynet.checkpoint import load_checkpoint, start_config

        model_cfg = start_config(load_checkpoint(start), given, Path(start).name)
        model_cfg = model_cfg.replace(gate_rule=a.gate_rule) if a.gate_rule else model_cfg  # a decision, not weights
    else:
        given = {**given, "gate_rule": a.gate_rule} if a.gate_rule else given
        model_cfg = MODEL_PRESETS[a.preset].replace(**given)
    cfg = TRAIN_PRESETS[a.train_preset] if a.train_preset else default_train_config(a.preset)
    changes = {
        "steps": a.steps,
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "lr": a.lr,
        "seed": a.seed,
        "num_workers": a.workers,
        "checkpoint_every": a.checkpoint_every,
        "crop_size": a.crop_size,
        "select_every": a.select_every,
        "fused_rgb_dropout": a.fused_rgb_dropout,
        "fused_depth_view_weight": a.fused_depth_view_weight,
        "fused_attention_warmup": a.fused_attention_warmup,
        "depth_restarts": a.depth_restarts,
        "cpu_bf16": True if a.cpu_bf16 else None,
    }
    cfg = cfg.replace(**{k: v for k, v in changes.items() if v is not None})
    if a.texture_dir:
        cfg = cfg.replace(synth=dataclasses.replace(cfg.synth, texture_dir=a.texture_dir))
    summary = train_category(
        a.data,
        a.category,
        a.out,
        model_cfg=model_cfg,
        train_cfg=cfg,
        data_format=a.format,
        device=a.device,
        resume=a.resume,
        init_from=a.init,
        progress=not a.quiet,
        ship=a.ship,
        preset=a.preset,
    )
    if summary.checkpoint is not None:  # None on the other ranks of a torchrun job: rank 0 reports
        print(f"saved {summary.checkpoint} after {summary.steps} steps; alpha {summary.alpha:.4f}")
        _print_calibration_notes(summary.validation or {})
    return 0


def _print_calibration_notes(metrics: dict) -> None:
    """The calibration's warnings (an alpha at the end of its range, a fused head that never used depth)."""
    for key in ("depth_note", "alpha_note"):
        if key in metrics:
            print(f"note: {metrics[key]}", file=sys.stderr)


def cmd_calibrate(a: argparse.Namespace) -> int:
    from easynet.pipeline import recalibrate_checkpoint

    r = recalibrate_checkpoint(
        a.checkpoint,
        a.data,
        a.category,
        a.out,
        data_format=a.format,
        device=a.device,
        half=a.half,
        gate_rule=a.gate_rule,
    )
    rule = f"; control gate rule {r['gate_rule']}" if "gate_rule" in r else ""
    print(
        f"calibrated {r['checkpoint']} on {r['n_images']} validation images ({r['n_synthetic']} synthetic "
        f"anomalies); alpha {r['alpha']:.4f}{rule}"
    )
    _print_calibration_notes(r)
    return 0


# --- evaluate -------------------------------------------------------------------------------------
def cmd_evaluate(a: argparse.Namespace) -> int:
    from easynet.gate import MODES
    from easynet.pipeline import evaluate_category

    gates = list(MODES) if a.gate == "all" else [a.gate]
    report, test, heads = evaluate_category(
        a.checkpoint, a.data, a.category, gates=gates, data_format=a.format, device=a.device
    )
    print(format_table(report))
    if a.json:
        _write_json(a.json, report.to_dict())
    if a.save_maps:
        _save_maps(a.save_maps, test, heads)
    return 0


def format_table(report: EvalReport) -> str:
    """A paper-like table: one row per gate, metric columns, then per-defect I-AUROC."""
    gates = report.gates
    defects = sorted({d for g in gates.values() for d in g.get("per_defect_i_auroc", {})})
    head = f"{'gate':8s} {'I-AUROC':>8s} {'I-AP':>8s} {'P-AUROC':>8s} {'P-AP':>8s} {'AUPRO':>8s}"
    lines = [
        f"{report.category} ({report.n_images} test images)",
        head + "".join(f" {d[:10]:>10s}" for d in defects),
    ]
    for name, g in gates.items():
        row = f"{name:8s} " + " ".join(f"{g[k]:8.3f}" for k in ("i_auroc", "i_ap", "p_auroc", "p_ap", "aupro"))
        row += "".join(f" {g['per_defect_i_auroc'].get(d, float('nan')):10.3f}" for d in defects)
        lines.append(row)
    return "\n".join(lines)


def _save_maps(folder: str | Path, test: Any, heads: Any) -> None:
    import numpy as np

    folder = Path(folder)
    for i in range(len(test)):
        name = test[i].name.replace("/", "_")
        maps = {"rgb": heads.prob_rgb[i]}
        if heads.prob_fused is not None:
            maps["fused"] = heads.prob_fused[i]
        for head, m in maps.items():
            target = folder / f"{name}_{head}.npy"
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, m.astype(np.float32))


# --- predict --------------------------------------------------------------------------------------
def cmd_predict(a: argparse.Namespace) -> int:
    import numpy as np

    from easynet.batch import display_heat_original, summarise
    from easynet.data.io import read_rgb
    from easynet.predict import Predictor
    from easynet.visualize import colorize, depth_preview, overlay, to_uint8, write_png

    predictor = Predictor.from_checkpoint(a.checkpoint, a.device, precision=a.precision)
    if predictor.precision_note:
        print(f"note: {predictor.precision_note}", file=sys.stderr)
    if Path(a.rgb).is_dir() or a.rgb.lower().endswith(".zip"):
        return _predict_batch(predictor, a)
    p = predictor.predict(a.rgb, a.depth, gate=a.gate, sensitivity=a.sensitivity)
    category = (predictor.checkpoint.provenance if predictor.checkpoint else {}).get("category")
    result = p.to_json() | {"summary": summarise(p, predictor.calibration, category)}
    verdict = "ANOMALOUS" if p.is_anomalous else "good"
    print(f"{verdict}: score {p.score:.4f} (threshold {p.threshold:.4f}, gate {p.gate} -> {p.used} head)")
    if result["summary"]["warning"]:
        print(f"warning: {result['summary']['warning']}")
    if a.json:
        _write_json(a.json, result)
    if a.out:
        out = Path(a.out)
        heat = display_heat_original(p, predictor.calibration)  # the app's scale, on the input's own pixels
        write_png(out / "heatmap.png", colorize(heat))
        write_png(out / "overlay.png", overlay(read_rgb(a.rgb), heat))
        write_png(out / "reconstruction_rgb.png", to_uint8(p.rec_rgb))
        if p.rec_depth is not None:
            write_png(out / "reconstruction_depth.png", depth_preview(p.rec_depth))
        np.save(out / "anomaly_map.npy", p.anomaly_map.astype(np.float32))
    return 0


def _predict_batch(predictor: Any, a: argparse.Namespace) -> int:
    """`predict --rgb FOLDER|ZIP`: every image (paired with its depth file by name) -> a report folder + zip."""
    from easynet.batch import collect, run_batch

    if a.depth:
        raise EasyNetError("--depth goes with one image; in a folder, depth files are paired with images by name")
    out = Path(a.out or "batch_report")
    items = collect([a.rgb], scratch=out / "unpacked")
    category = (predictor.checkpoint.provenance if predictor.checkpoint else {}).get("category")
    rows, archive = run_batch(predictor, items, out, a.gate, a.sensitivity, category)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        facts = f"{r['score']:.4f} / {r['threshold']:.4f} ({r['head']} head)" if r["verdict"] != "error" else ""
        print(f"{r['name']:<{width}}  {r['verdict']:<5}  {facts}  {r.get('warning') or ''}".rstrip())
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("OK", "NG", "error")}
    print(
        f"{len(rows)} images: {counts['OK']} OK, {counts['NG']} NG, {counts['error']} unreadable; report "
        f"{out / 'report.csv'}, {out / 'report.json'}, overlays in {out / 'overlays'}, all in {archive}"
    )
    if a.json:
        _write_json(a.json, rows)
    return 0


# --- info -----------------------------------------------------------------------------------------
def model_info(model: Any, image_size: int = 256) -> dict[str, Any]:
    """Parameters and multiply-accumulates of one forward at image_size (both heads, as in training)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from easynet.model import count_parameters

    cfg = model.cfg
    rgb = torch.zeros(1, 3, image_size, image_size)
    depth = torch.zeros(1, 1, image_size, image_size) if cfg.has_depth else None
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(rgb, depth)
    return {"parameters": count_parameters(model), "gmac": counter.get_total_flops() / 2e9, "image_size": image_size}


def cmd_info(a: argparse.Namespace) -> int:
    from easynet.model import EasyNet

    if a.checkpoint:
        from easynet.checkpoint import load_checkpoint

        ckpt = load_checkpoint(a.checkpoint)
        model, cfg = ckpt.build_model(), ckpt.model_config
        extra = {
            "calibration": ckpt.calibration.summary(),
            "provenance": {k: v for k, v in ckpt.provenance.items() if k != "train_state"},
        }
    else:
        cfg = MODEL_PRESETS[a.preset]
        model, extra = EasyNet(cfg), {}
    info = model_info(model, a.image_size)
    print(f"parameters: {info['parameters'] / 1e6:.1f} M ({info['parameters']:,})")
    print(f"GMACs at {a.image_size}x{a.image_size}: {info['gmac']:.2f}")
    print("config: " + json.dumps(config_to_dict(cfg)))
    if a.json:
        _write_json(a.json, {**info, "config": config_to_dict(cfg), **extra})
    return 0


# --- others ---------------------------------------------------------------------------------------
def cmd_import_official(a: argparse.Namespace) -> int:
    from easynet.checkpoint import import_official

    print(f"wrote {import_official(a.weights, a.out, alpha=a.alpha, category=a.category)}")
    return 0


def cmd_synth(a: argparse.Namespace) -> int:
    from easynet.data.synthetic import generate

    kw = {"size": a.size, "n_train": a.n_train, "seed": a.seed}
    roots = generate(a.out_root, categories=a.categories, **{k: v for k, v in kw.items() if v is not None})
    for r in roots:
        print(f"wrote {r}")
    return 0


# --- bench / export -------------------------------------------------------------------------------
def cmd_bench(a: argparse.Namespace) -> int:
    from easynet.bench import bench_network, machine
    from easynet.model import EasyNet
    from easynet.runtime import configure_threads, resolve_device, resolve_precision

    configure_threads()
    device = resolve_device(a.device)
    precision, note = resolve_precision(a.precision, device)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if a.checkpoint:
        from easynet.checkpoint import load_checkpoint

        model = load_checkpoint(a.checkpoint).build_model()
    else:
        model = EasyNet(MODEL_PRESETS[a.preset].replace(**({"image_size": a.image_size} if a.image_size else {})))
    result = bench_network(
        model,
        device,
        backend=a.backend,
        precision=precision,
        gate=a.gate,
        batch_size=a.batch_size,
        image_size=a.image_size,
        warmup=a.warmup,
        iterations=a.iterations,
        min_seconds=a.min_seconds,
        preprocess=not a.no_preprocess,
    )
    r = result
    print(
        f"{r.backend} {r.precision} on {r.device}, gate {r.gate}, batch {r.batch_size} at {r.image_size}px: "
        f"p50 {r.latency_p50_ms:.1f} ms, p95 {r.latency_p95_ms:.1f} ms, {r.images_per_s:.1f} images/s, "
        f"{r.gmac_per_image:.2f} GMAC/image, {r.gflops_achieved:.1f} GFLOP/s, {r.parameters / 1e6:.2f} M parameters, "
        f"peak RSS {r.peak_rss_mib:.0f} MiB" + (f", CUDA peak {r.cuda_peak_mib:.0f} MiB" if r.cuda_peak_mib else "")
    )
    if r.preprocess_ms is not None:
        print(f"preprocessing (800x800 plane removal + resize): {r.preprocess_ms:.1f} ms")
    if a.json:
        _write_json(a.json, {**r.to_json(), "machine": machine()})
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from easynet.checkpoint import load_checkpoint
    from easynet.export import export_onnx

    model = load_checkpoint(a.checkpoint).build_model()
    Path(a.onnx).parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, a.onnx, heads=a.heads)
    print(f"wrote {a.onnx} ({a.heads} graph, {model.cfg.image_size}x{model.cfg.image_size} inputs)")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


# option -> (is the value possible, what is expected); checked before any work (None = not given)
OPTION_RULES: dict[str, tuple[Any, str]] = {
    "steps": (lambda v: v >= 1, "a number of steps of at least 1"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "image_size": (lambda v: 16 <= v <= 2048 and v % 16 == 0, "a multiple of 16 from 16 to 2048"),
    "lr": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "workers": (lambda v: 0 <= v <= 256, "from 0 to 256"),
    "checkpoint_every": (lambda v: v >= 0, "0 (only at the end) or more"),
    "seed": (lambda v: v >= 0, "0 or more"),
    "sensitivity": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "iterations": (lambda v: v >= 1, "at least 1"),
    "warmup": (lambda v: v >= 0, "0 or more"),
    "min_seconds": (lambda v: math.isfinite(v) and v >= 0, "0 or more seconds"),
    "size": (lambda v: 16 <= v <= 4096, "from 16 to 4096 pixels"),
    "n_train": (lambda v: v >= 1, "at least 1"),
    "fused_rgb_dropout": (lambda v: 0 <= v <= 1, "a probability from 0 to 1"),
    "fused_depth_view_weight": (lambda v: math.isfinite(v) and v >= 0, "0 or more"),
    "depth_restarts": (lambda v: 0 <= v <= 10, "from 0 to 10"),
    "fused_attention_warmup": (lambda v: 0 <= v <= 1, "a fraction of the training steps from 0 to 1"),
}
# option -> what the path must be: "file" (a file to write), "folder" (a folder to write into)
PRECISION_HELP = (
    "auto: fp32 (bf16 changed some shipped results, see benchmarks/bf16_guard.json); bf16: bf16 where the "
    "device has it natively (avx512_bf16 / AMX CPUs, CUDA), else fp32 with a note"
)
OUTPUT_RULES = {"json": "file", "onnx": "file", "save_maps": "folder"}


def _writable(value: str, flag: str, kind: str) -> None:
    """Refuses an output path that cannot be written, before any work (`--out` that is a file, a folder given
    for a file, a parent that is a file or not writable)."""
    path = Path(value).expanduser()
    if kind == "file" and path.is_dir():
        raise InputError(f"{flag} {value} is a folder; give a file name, e.g. {Path(value) / 'out'}")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise InputError(f"{flag} {value} is an existing file; give a folder for the outputs")
    parent = path if kind == "folder" else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {value} cannot be written: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {value} cannot be written: no permission to write in {parent}")


def check_options(a: argparse.Namespace) -> None:
    """Impossible option values and unwritable outputs are refused with one sentence before any work."""
    for name, (ok, expected) in OPTION_RULES.items():
        value = getattr(a, name, None)
        if value is not None and not ok(value):
            raise InputError(f"--{name.replace('_', '-')} must be {expected}, got {value}")
    for name, kind in OUTPUT_RULES.items():
        if getattr(a, name, None):
            _writable(getattr(a, name), f"--{name.replace('_', '-')}", kind)
    out = getattr(a, "out", None)
    if out:  # predict writes pictures into a folder; train and calibrate write one checkpoint file
        _writable(out, "--out", "folder" if a.command == "predict" else "file")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="easynet", description="EasyNet RGB-D anomaly detection")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gates = ("close", "open", "control")

    t = sub.add_parser("train", help="train on a data set's good images (synthetic anomalies)")
    t.add_argument("--data", required=True)
    t.add_argument("--category", default=None)
    t.add_argument("--out", required=True)
    t.add_argument("--format", choices=("mvtec3d", "eyecandies", "pairs"))
    t.add_argument("--modality", choices=("rgbd", "rgb"))
    t.add_argument("--preset", choices=sorted(MODEL_PRESETS), default="lite")
    t.add_argument(
        "--train-preset",
        choices=sorted(TRAIN_PRESETS),
        help="default: the recipe named like --preset if there is one (lite, base), else official. "
        "official: lr 2e-4 (authors' code); paper: lr 2e-3 (paper); lite: paper, 800 steps (the shipped synthetic "
        "checkpoints); base: real photographs",
    )
    t.add_argument("--layers", type=int, choices=(1, 2, 3))
    t.add_argument("--steps", type=int)
    t.add_argument("--epochs", type=int, help="training length in passes over the training set (overrides --steps)")
    t.add_argument("--crop-size", type=int, help="train on random crops of this side (0: whole images)")
    t.add_argument("--select-every", type=int, help="keep the best weights by validation, scored every N steps")
    t.add_argument(
        "--fused-rgb-dropout",
        type=float,
        help="probability per training image that the fused head sees no RGB features (modality dropout; 0: paper)",
    )
    t.add_argument(
        "--fused-depth-view-weight",
        type=float,
        help="weight of a second focal loss on the fused head with its RGB features zeroed, against the depth part "
        "of each anomaly (teaches the fused head to read depth; 0: paper)",
    )
    t.add_argument(
        "--fused-attention-warmup",
        type=float,
        help="fraction of the training steps during which the fused head's attention scores are held at 0.5 "
        "before they are learned (0: paper; benchmarks/RECIPE.md)",
    )
    t.add_argument(
        "--depth-restarts",
        type=int,
        help="train again with the next seed, at most this often, when the fused head ends depth-blind on validation "
        "(default: the preset's)",
    )
    t.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 autocast when training on the CPU: faster only on CPUs with native bf16 (avx512_bf16, AMX)",
    )
    t.add_argument("--texture-dir", help="folder of texture images for synthetic anomalies (e.g. DTD)")
    t.add_argument(
        "--depth-encoding",
        choices=("height", "metric"),
        help="default: the preset's (lite: metric). height: height above the table / the image's highest point; "
        "metric: height in metres / one scale fitted on the training split, synthetic dents and bumps 0.1-0.5 "
        "of that scale",
    )
    t.add_argument(
        "--depth-residual",
        choices=("on", "off"),
        help="on: the fused head also sees the depth reconstruction residual (input - reconstruction; not in the "
        "paper, benchmarks/RECIPE.md); default: the preset's",
    )
    t.add_argument(
        "--depth-head",
        choices=("on", "off"),
        help="on: a training-only linear head on the depth features, trained against the depth part of each "
        "synthetic anomaly (not in the paper, benchmarks/RECIPE.md); default: the preset's",
    )
    t.add_argument(
        "--gate-rule",
        choices=GATE_RULES,
        help="how control picks a head: entropy (the paper: H_fused > H_rgb + alpha) or score (the head whose "
        "score is the larger multiple of its threshold); default: the preset's",
    )
    t.add_argument("--batch-size", type=int)
    t.add_argument("--image-size", type=int)
    t.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        help="how an image becomes the square input: stretch, letterbox, pad (the authors'), or object (a square "
        "around the depth foreground, so small parts get more pixels); default: the preset's",
    )
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--workers", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--device", default="auto")
    t.add_argument("--resume")
    t.add_argument("--init", help="start from these weights (fine-tuning)")
    t.add_argument("--ship", action="store_true", help="fp16 weights, no optimizer state (small files)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("calibrate", help="re-fit alpha, thresholds and heat-map scale on a validation split")
    c.add_argument("--checkpoint", required=True)
    c.add_argument("--data", required=True)
    c.add_argument("--category", default=None)
    c.add_argument("--format", choices=("mvtec3d", "eyecandies", "pairs"))
    c.add_argument("--out", help="write here instead of over the checkpoint")
    c.add_argument("--half", action="store_true", help="store the weights as float16 (shipped checkpoints)")
    c.add_argument("--gate-rule", choices=GATE_RULES, help="switch how control picks a head (default: keep it)")
    c.add_argument("--device", default="auto")
    c.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("evaluate", help="metrics of a checkpoint on a test split")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--category", default=None)
    e.add_argument("--format", choices=("mvtec3d", "eyecandies", "pairs"))
    e.add_argument("--gate", choices=(*gates, "all"), default="all")
    e.add_argument("--json")
    e.add_argument("--save-maps")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="score one RGB (+ depth) image, or every image of a folder or zip")
    p.add_argument("--checkpoint", required=True)
    p.add_argument(
        "--rgb",
        required=True,
        help="an image, or a folder / .zip of images with depth files named "
        "like them (a batch: report.csv, report.json and overlays/ in --out, default batch_report)",
    )
    p.add_argument("--depth")
    p.add_argument("--gate", choices=gates, default="control")
    p.add_argument("--sensitivity", type=float, default=1.0)
    p.add_argument("--out")
    p.add_argument("--json")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.set_defaults(func=cmd_predict)

    i = sub.add_parser("info", help="parameters, GMACs and config of a preset or checkpoint")
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(MODEL_PRESETS))
    src.add_argument("--checkpoint")
    i.add_argument("--image-size", type=int, default=256)
    i.add_argument("--json")
    i.set_defaults(func=cmd_info)

    o = sub.add_parser("import-official", help="convert the authors' 2-layer Fusion1 .pth")
    o.add_argument("--weights", required=True)
    o.add_argument("--out", required=True)
    o.add_argument("--category", help="MVTec 3D-AD class: use the authors' alpha for it (bagel 0.38, ...)")
    o.add_argument("--alpha", type=float, help="the gate's alpha (overrides --category's); default 0")
    o.set_defaults(func=cmd_import_official)

    s = sub.add_parser("synth", help="generate the synthetic RGB-D data set (MVTec 3D-AD layout)")
    s.add_argument("out_root")
    s.add_argument("--categories", nargs="+")
    s.add_argument("--size", type=int)
    s.add_argument("--n-train", type=int)
    s.add_argument("--seed", type=int)
    s.set_defaults(func=cmd_synth)

    b = sub.add_parser("bench", help="latency, throughput, memory and GMACs of the network")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(MODEL_PRESETS), default="lite")
    src.add_argument("--checkpoint")
    b.add_argument("--device", default="cpu")
    b.add_argument("--batch-size", type=int, default=1)
    b.add_argument("--image-size", type=int)
    b.add_argument(
        "--backend",
        choices=("optimized", "eager", "onnx", "compiled", "naive"),
        default="optimized",
        help="naive: the authors' literal forward (both heads, up-sample + concatenate), the reference; compiled: "
        "optimized under torch.compile (the warm-up calls compile, about a minute)",
    )
    b.add_argument("--gate", choices=gates, default="control")
    b.add_argument("--warmup", type=int, default=2)
    b.add_argument("--iterations", type=int, default=10)
    b.add_argument("--min-seconds", type=float, default=0.0, help="keep timing until this much time has passed")
    b.add_argument("--no-preprocess", action="store_true", help="skip timing the 800x800 preprocessing")
    b.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    b.add_argument("--json")
    b.set_defaults(func=cmd_bench)

    x = sub.add_parser("export", help="export a checkpoint to ONNX (a fixed-gate graph)")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--onnx", required=True)
    x.add_argument(
        "--heads",
        choices=("both", "rgb"),
        default="both",
        help="both: both heads' maps + gate entropies (gate open/control); rgb: RGB stream only (gate close)",
    )
    x.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error is one line on stderr and exit status 1 (2 for unknown options)."""
    args = build_parser().parse_args(argv)
    try:
        check_options(args)
        return args.func(args)
    except EasyNetError as err:
        message = str(err)
    except MemoryError:
        message = (
            f"`easynet {args.command}` ran out of memory; use a smaller image, batch size or preset, or a "
            "machine with more memory"
        )
    except OSError as err:  # a file that cannot be read or written (permissions, disk full, a file as a folder)
        where = f" ({err.filename})" if err.filename else ""
        message = f"{err.strerror or type(err).__name__}{where}; check the paths given to `easynet {args.command}`"
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"error: {message}", file=sys.stderr)
    return 1
