"""Command line: `python -m easynet <command>`. Thin: parse arguments, build configs, call the library.

Every config field is reachable from `train` through `--set key=value` (checked against the dataclasses in
easynet.config); the options listed by `--help` are the ones a user needs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from easynet.config import MODEL_PRESETS, PRECISIONS, apply_overrides, config_to_dict
from easynet.errors import EasyNetError, InputError
from easynet.results import EvalReport, headline

GATES = ("close", "open", "control")
FORMATS = ("mvtec3d", "eyecandies", "pairs")
# exit status of `predict`: the worst verdict (a line system reads it without parsing JSON)
EXIT_CODES = {"OK": 0, "NG": 3, "UNSURE": 4}
ASSETS_ENV = "EASYNET_ASSETS"  # the folder holding checkpoints/ (for `--checkpoint auto`); default: the current one


def _write_json(path: str | Path, data: Any) -> None:
    from easynet.atomic import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --- train / calibrate ----------------------------------------------------------------------------
def cmd_train(a: argparse.Namespace) -> int:
    from easynet.pipeline import default_train_config, train_category

    base = {"image_size": a.image_size, "modality": a.modality}
    fixed = {"steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed}
    train_cfg = default_train_config(a.preset).replace(**{k: v for k, v in fixed.items() if v is not None})
    model_cfg, train_cfg, asked = apply_overrides(
        MODEL_PRESETS[a.preset].replace(**{k: v for k, v in base.items() if v is not None}), train_cfg, a.set
    )
    if a.init or a.resume:  # the checkpoint's architecture: only what was asked must agree with it
        model_cfg = {**{k: v for k, v in base.items() if v is not None}, **asked}
    explicit = {k for k, v in fixed.items() if v is not None} | {item.partition("=")[0].strip() for item in a.set}
    summary = train_category(
        a.data,
        a.category,
        a.out,
        preset=a.preset,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        data_format=a.format,
        device=a.device,
        resume=a.resume,
        init_from=a.init,
        progress=not a.quiet,
        ship=a.ship,
        explicit=explicit,
    )
    if summary.checkpoint is not None:  # None on the other ranks of a torchrun job: rank 0 reports
        print(f"saved {summary.checkpoint} after {summary.steps} steps; alpha {summary.alpha:.4f}")
        _print_calibration_notes(summary.validation or {})
        if summary.worse_than_parent():
            print(
                f"note: this fine-tuned model is worse on validation than {Path(a.init).name} "
                f"({headline(summary.validation):.3f} against {headline(summary.parent_validation):.3f}); keep the "
                "parent",
                file=sys.stderr,
            )
    return 0


def _print_calibration_notes(metrics: dict) -> None:
    """The calibration's warnings (an alpha at the end of its range, a fused head that never used depth)."""
    for key in ("depth_note", "alpha_note"):
        if key in metrics:
            print(f"note: {metrics[key]}", file=sys.stderr)


def cmd_calibrate(a: argparse.Namespace) -> int:
    from easynet.pipeline import labelled_images, operating_point, recalibrate_checkpoint

    if a.labels:  # the operating point from judged images: a new checkpoint, thresholds only
        if not a.out:
            raise InputError("--labels writes a new version of the checkpoint; give its file with --out")
        if (a.target_miss is None) == (a.target_false_reject is None):
            raise InputError("--labels needs one target: --target-miss or --target-false-reject")
        labels = labelled_images(a.labels, a.category)
        record = operating_point(
            a.checkpoint,
            labels,
            a.out,
            target_miss=a.target_miss,
            target_false_reject=a.target_false_reject,
            device=a.device,
            provenance={"labels": f"{Path(a.labels).name}/{a.category or ''}", "n_labels": len(labels)},
        )
        c = record["counts"]
        print(
            f"wrote {a.out}: thresholds x {record['cutoff']:.4f}; on the {len(labels)} judged images it catches "
            f"{c['caught']} of {c['caught'] + c['missed']} defects and rejects {c['false_rejects']} of "
            f"{c['false_rejects'] + c['passed']} good parts"
        )
        return 0

    if not a.data:
        raise InputError("give --data (re-fit the calibration on a validation split) or --labels (judged images)")
    options = {"data_format": a.format, "device": a.device, "half": a.half, "gate_rule": a.gate_rule}
    r = recalibrate_checkpoint(a.checkpoint, a.data, a.category, a.out, reference_only=a.reference_only, **options)
    if a.reference_only:
        print(f"added the typical-part reference to {r['checkpoint']}; its thresholds are unchanged")
        return 0
    rule = f"; control gate rule {r['gate_rule']}" if "gate_rule" in r else ""
    print(
        f"calibrated {r['checkpoint']} on {r['n_images']} validation images ({r['n_synthetic']} synthetic "
        f"anomalies); alpha {r['alpha']:.4f}{rule}"
    )
    _print_calibration_notes(r)
    return 0


# --- evaluate -------------------------------------------------------------------------------------
def cmd_evaluate(a: argparse.Namespace) -> int:
    from easynet.pipeline import evaluate_category

    gates = list(GATES) if a.gate == "all" else [a.gate]
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

    from easynet.data.io import read_rgb
    from easynet.predict import Predictor, auto_predictor
    from easynet.visualize import colorize, depth_preview, overlay, to_uint8, write_png

    if a.checkpoint == "auto" or Path(a.checkpoint).is_dir():  # the model each part is most typical for
        folder = Path(os.environ.get(ASSETS_ENV, ".")) / "checkpoints" if a.checkpoint == "auto" else a.checkpoint
        predictor = auto_predictor(folder, device=a.device, precision=a.precision)
    else:
        predictor = Predictor.from_checkpoint(a.checkpoint, a.device, precision=a.precision)
    if predictor.precision_note:
        print(f"note: {predictor.precision_note}", file=sys.stderr)
    if Path(a.rgb).is_dir() or a.rgb.lower().endswith(".zip"):
        return _predict_batch(predictor, a)
    p = predictor.predict(a.rgb, a.depth, gate=a.gate, sensitivity=a.sensitivity)
    verdict = p.verdict
    if p.candidates:
        others = ", ".join(f"{name} {t:.2f}" for name, t in sorted(p.candidates.items(), key=lambda kv: kv[1]))
        print(f"model: {p.model}, chosen automatically (typicality per model: {others})")
    print(f"{verdict.label}: score {p.score:.4f} (threshold {p.threshold:.4f}, gate {p.gate} -> {p.used} head)")
    if verdict.reason:
        print(f"{'why' if verdict.label == 'UNSURE' else 'note'}: {verdict.reason}")
    if a.json:
        _write_json(a.json, p.to_json())
    if a.out:
        out = Path(a.out)
        heat = p.heatmap_original  # the app's scale, on the input's own pixels
        write_png(out / "heatmap.png", colorize(heat))
        write_png(out / "overlay.png", overlay(read_rgb(a.rgb), heat))
        write_png(out / "reconstruction_rgb.png", to_uint8(p.rec_rgb))
        if p.rec_depth is not None:
            write_png(out / "reconstruction_depth.png", depth_preview(p.rec_depth))
        np.save(out / "anomaly_map.npy", p.anomaly_map.astype(np.float32))
    return EXIT_CODES[verdict.label]


def _predict_batch(predictor: Any, a: argparse.Namespace) -> int:
    """`predict --rgb FOLDER|ZIP`: every image (paired with its depth file by name) -> a report folder + zip."""
    from easynet.batch import collect, run_batch

    if a.depth:
        raise EasyNetError("--depth goes with one image; in a folder, depth files are paired with images by name")
    out = Path(a.out or "batch_report")
    items = collect([a.rgb], scratch=out / "unpacked")
    rows, archive = run_batch(predictor, items, out, a.gate, a.sensitivity)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        facts = f"{r['score']:.4f} / {r['threshold']:.4f} ({r['head']} head)" if r["verdict"] != "error" else ""
        print(f"{r['name']:<{width}}  {r['verdict']:<6}  {facts}  {r.get('reason') or ''}".rstrip())
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("OK", "NG", "UNSURE", "error")}
    print(
        f"{len(rows)} images: {counts['OK']} OK, {counts['NG']} NG, {counts['UNSURE']} UNSURE, {counts['error']} "
        f"unreadable; report {out / 'report.csv'}, {out / 'report.json'}, overlays in {out / 'overlays'}, "
        f"all in {archive}"
    )
    if a.json:
        _write_json(a.json, rows)
    worst = [v for v in ("NG", "UNSURE") if counts[v]]
    return EXIT_CODES[worst[0]] if worst else 0


# --- info, import, synth, export ------------------------------------------------------------------
def cmd_info(a: argparse.Namespace) -> int:
    from easynet.model import EasyNet, count_macs, count_parameters

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
    info = {"parameters": count_parameters(model), "gmac": count_macs(model, a.image_size), "image_size": a.image_size}
    print(f"parameters: {info['parameters'] / 1e6:.1f} M ({info['parameters']:,})")
    print(f"GMACs at {a.image_size}x{a.image_size}: {info['gmac']:.2f}")
    if a.checkpoint:  # what the app's default backend picks for this model on this machine
        from easynet.backends import choose
        from easynet.runtime import configure_threads, resolve_device

        configure_threads()
        info["backend"] = choose(model, resolve_device("cpu")).note
        print(info["backend"])
    print("config: " + json.dumps(config_to_dict(cfg)))
    if a.json:
        _write_json(a.json, {**info, "config": config_to_dict(cfg), **extra})
    return 0


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


def cmd_export(a: argparse.Namespace) -> int:
    from easynet.checkpoint import load_checkpoint
    from easynet.export import export_onnx

    model = load_checkpoint(a.checkpoint).build_model()
    Path(a.onnx).parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, a.onnx, heads=a.heads)
    print(f"wrote {a.onnx} ({a.heads} graph, {model.cfg.image_size}x{model.cfg.image_size} inputs)")
    return 0


# --- arguments ------------------------------------------------------------------------------------
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
    "seed": (lambda v: v >= 0, "0 or more"),
    "sensitivity": (lambda v: math.isfinite(v) and v > 0, "a positive finite number"),
    "size": (lambda v: 16 <= v <= 4096, "from 16 to 4096 pixels"),
    "n_train": (lambda v: v >= 1, "at least 1"),
    "target_miss": (lambda v: 0 <= v < 1, "a share from 0 to less than 1"),
    "target_false_reject": (lambda v: 0 <= v < 1, "a share from 0 to less than 1"),
}
# option -> what the path must be: "file" (a file to write), "folder" (a folder to write into)
OUTPUT_RULES = {"json": "file", "onnx": "file", "save_maps": "folder"}  # and --out (check_options)
PRECISION_HELP = (
    "auto: fp32 (bf16 changed some shipped results, benchmarks/bf16_guard.json); bf16: bf16 where the device has "
    "it natively (avx512_bf16 / AMX CPUs, CUDA), else fp32 with a note"
)


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


def _data_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="data set root (MVTec 3D-AD, Eyecandies or a folder of pairs)")
    p.add_argument("--category", default=None)
    p.add_argument("--format", choices=FORMATS, help="default: detected from the folder")
    p.add_argument("--device", default="auto")


def _add_train(sub: Any) -> None:
    t = sub.add_parser("train", help="train on a data set's good images (synthetic anomalies)")
    _data_options(t)
    t.add_argument("--out", required=True, help="the checkpoint to write")
    t.add_argument("--preset", choices=sorted(MODEL_PRESETS), default="lite", help="model and recipe (default lite)")
    t.add_argument("--modality", choices=("rgbd", "rgb"), help="default: the preset's")
    t.add_argument("--image-size", type=int, help="default: the preset's")
    t.add_argument("--steps", type=int, help="default: the preset's recipe")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--init", help="start from these weights (fine-tuning)")
    t.add_argument("--resume", help="continue a run from its checkpoint")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting of easynet/config.py, e.g. --set layers=3 --set synth.depth_amplitude=0.2,0.5 "
        "--set cpu_bf16=on (repeatable; unknown keys are refused)",
    )
    t.add_argument("--ship", action="store_true", help="fp16 weights, no optimizer state (small files)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)


def _add_calibrate(sub: Any) -> None:
    c = sub.add_parser("calibrate", help="re-fit thresholds, heat-map scale, alpha and the typical-part reference")
    c.add_argument("--checkpoint", required=True)
    _data_options(c, required=False)  # --data (re-fit on validation) or --labels (the operating point)
    c.add_argument("--out", help="write here instead of over the checkpoint")
    c.add_argument("--half", action="store_true", help="store the weights as float16 (shipped checkpoints)")
    c.add_argument("--gate-rule", choices=("entropy", "score"), help="switch how control picks a head")
    c.add_argument(
        "--labels",
        help="a folder of judged images in the MVTec 3D-AD layout (e.g. the app's reviewed set): set the threshold "
        "from them for --target-miss or --target-false-reject, writing --out",
    )
    target = c.add_mutually_exclusive_group()
    target.add_argument("--target-miss", type=float, help="share of the judged defects that may pass, e.g. 0.01")
    target.add_argument("--target-false-reject", type=float, help="share of the judged good parts that may be rejected")
    c.add_argument(
        "--reference-only",
        action="store_true",
        help="only add the typical-part reference (checkpoints made before it existed); thresholds stay as they are",
    )
    c.set_defaults(func=cmd_calibrate)


def _add_evaluate(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="metrics of a checkpoint on a test split")
    e.add_argument("--checkpoint", required=True)
    _data_options(e)
    e.add_argument("--gate", choices=(*GATES, "all"), default="all")
    e.add_argument("--json")
    e.add_argument("--save-maps")
    e.set_defaults(func=cmd_evaluate)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="score one RGB (+ depth) image, or every image of a folder or zip; exit status 0 OK, 3 NG, 4 UNSURE",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a checkpoint; a folder of them, or auto (checkpoints/), picks per image the model the part fits best",
    )
    p.add_argument(
        "--rgb",
        required=True,
        help="an image, or a folder / .zip of images with depth files named like them (a batch: report.csv, "
        "report.json and overlays/ in --out, default batch_report)",
    )
    p.add_argument("--depth")
    p.add_argument("--gate", choices=GATES, default="control")
    p.add_argument("--sensitivity", type=float, default=1.0)
    p.add_argument("--out")
    p.add_argument("--json")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.set_defaults(func=cmd_predict)


def _add_others(sub: Any) -> None:
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


def cmd_audit(a: argparse.Namespace) -> int:
    from easynet.atomic import atomic_write_text
    from easynet.store import DB_NAME, Store, audit_csv

    folder = Path(a.workspace)
    if not (folder / DB_NAME).is_file():
        raise InputError(f"{folder.name} holds no EasyNet-3D workspace database ({DB_NAME}); give the app's workspace")
    rows = Store(folder).audit_rows(model=a.model, batch=a.batch)
    text = audit_csv(rows)
    if a.out:
        atomic_write_text(a.out, text)
        print(f"wrote {len(rows)} decisions to {a.out}")
    else:
        print(text, end="")
    return 0


def _add_audit(sub: Any) -> None:
    r = sub.add_parser("audit", help="the app's audit trail of human verdicts as CSV")
    r.add_argument("--workspace", default=os.environ.get("EASYNET_WORKSPACE", "workspace"))
    r.add_argument("--model", help="only the decisions on this model's verdicts")
    r.add_argument("--batch", help="only the decisions of this batch")
    r.add_argument("--out", help="write the CSV here (default: print it)")
    r.set_defaults(func=cmd_audit)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="easynet", description="EasyNet RGB-D anomaly detection")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_train, _add_calibrate, _add_evaluate, _add_predict, _add_audit, _add_others):
        add(sub)
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
