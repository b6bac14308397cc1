"""Runs every benchmark of the report and writes benchmarks/results.json and the table in benchmarks/README.md.

Run from the repository root: `python benchmarks/run_all.py` (5-8 minutes on 2 idle CPU cores; `--quick` runs the
same code paths at tiny sizes in a minute; `--render` only rewrites the table from results.json). Each network row
is one `python benchmarks/bench.py` process, so that its peak RSS is its own. bf16 rows are added where the CPU computes
bf16 natively, CUDA rows when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BENCH = HERE / "bench.py"  # one row per process
TABLE_BEGIN, TABLE_END = "<!-- results:begin -->", "<!-- results:end -->"
TRAINING_PATTERN = "easynet train|train_checkpoints"

# (preset, batch, image size, [(backend, gate[, precision])]); "naive" is the reference the speed-ups are quoted
# against; bf16 rows run only where the CPU computes bf16 natively (runtime.native_bf16), fp32 otherwise
CPU_ROWS = [
    ("paper", 1, 256, [("naive", "-"), ("eager", "control"), ("optimized", "control"), ("optimized", "open"),
                       ("optimized", "close"), ("onnx", "control"), ("optimized", "control", "bf16"),
                       ("optimized", "close", "bf16")]),
    ("lite", 1, 256, [("naive", "-"), ("eager", "control"), ("optimized", "control"), ("optimized", "close"),
                      ("onnx", "control"), ("onnx", "close"), ("compiled", "control"), ("compiled", "close"),
                      ("optimized", "control", "bf16"), ("compiled", "control", "bf16")]),
    ("lite", 8, 256, [("naive", "-"), ("optimized", "control"), ("onnx", "control")]),
    ("lite", 1, 128, [("naive", "-"), ("eager", "control"), ("optimized", "control"), ("optimized", "close"),
                      ("onnx", "control"), ("onnx", "close"), ("compiled", "control")]),
    ("lite", 8, 128, [("naive", "-"), ("optimized", "control"), ("onnx", "control")]),
]  # fmt: skip
CUDA_ROWS = [
    ("paper", 1, 256, [("naive", "-"), ("eager", "control"), ("optimized", "control"), ("optimized", "close")]),
    ("paper", 8, 256, [("naive", "-"), ("optimized", "control")]),
    ("lite", 1, 256, [("naive", "-"), ("optimized", "control")]),
    ("lite", 8, 256, [("naive", "-"), ("optimized", "control")]),
]
TARGETS = {
    "paper_cpu_speedup": 2.0,  # optimized (Predictor default gate: control) vs naive, paper, batch 1, 256
    "lite_cpu_images_per_s": 25.0,  # lite, batch 1, 256, network only
    "request_ms": 1000.0,  # whole predict request, lite at its image size
}


def training_running() -> bool:
    run = subprocess.run(["pgrep", "-f", TRAINING_PATTERN], capture_output=True, text=True)
    return bool(run.stdout.strip())


def load_situation() -> dict:
    return {"loadavg_1m": round(os.getloadavg()[0], 2), "training_running": training_running()}


def bench_row(
    preset: str, device: str, batch: int, size: int, backend: str, gate: str, quick: bool, precision: str = "fp32"
) -> dict:
    """One `benchmarks/bench.py` process; returns its JSON (plus the load at the time)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        iterations = "2" if quick or preset == "paper" and device == "cpu" else "10"
        cmd = [sys.executable, str(BENCH), "--preset", preset, "--device", device,
               "--batch-size", str(batch), "--image-size", str(size), "--backend", backend,
               "--gate", "control" if gate == "-" else gate, "--iterations", iterations,
               "--warmup", "1" if quick or preset == "paper" else "3", "--no-preprocess",
               "--precision", precision, "--json", str(out)]  # fmt: skip
        if not quick and preset == "lite":
            cmd += ["--min-seconds", "3"]
        load = load_situation()
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if run.returncode:
            return {"preset": preset, "device": device, "batch_size": batch, "image_size": size, "backend": backend,
                    "gate": gate, "precision": precision, "error": run.stderr.strip().splitlines()[-1:]}  # fmt: skip
        row = json.loads(out.read_text())
    row.pop("machine", None)
    return {"preset": preset, **row, "load_before": load}


def add_ratios(rows: list[dict]) -> None:
    """speedup = naive p50 / row p50 for the same preset, device, batch and size (measured in this run)."""
    for r in rows:
        ref = next((n for n in rows if n.get("backend") == "naive" and all(
            n.get(k) == r.get(k) for k in ("preset", "device", "batch_size", "image_size"))), None)  # fmt: skip
        if ref and "latency_p50_ms" in r:
            r["speedup_vs_naive"] = round(ref["latency_p50_ms"] / r["latency_p50_ms"], 2)


def request_timing(quick: bool) -> dict:
    """The Predictor's whole request in the app's default path (backend auto) for a shipped lite checkpoint at its
    image size (a random-weight lite model with a plausible depth scale when checkpoints/ is absent)."""
    import torch
    from bench import bench_request

    from easynet.checkpoint import Checkpoint, save_checkpoint
    from easynet.config import MODEL_PRESETS
    from easynet.model import EasyNet

    shipped = ROOT / "checkpoints" / "gasket.pt"
    with tempfile.TemporaryDirectory() as tmp:
        path = shipped
        if not shipped.is_file():
            cfg = MODEL_PRESETS["lite"].replace(depth_scale=0.05)  # metric depth needs the scale training fits
            torch.manual_seed(0)
            path = save_checkpoint(Checkpoint(cfg, EasyNet(cfg).state_dict()), Path(tmp) / "lite.pt")
        total, parts = bench_request(path, repeats=2 if quick else 7, backend="auto")
    return {"preset": "lite", "image_size": MODEL_PRESETS["lite"].image_size, "input": "800x800 png + xyz tiff",
            "gate": "control", "backend": "auto", "model": path.name, "total_ms": total, "parts_ms": parts}  # fmt: skip


def _gflops(call, flop: float, repeats: int) -> float:
    """GFLOP/s of ``call`` (``flop`` per call) over ``repeats`` calls after 2 warm-up calls."""
    for _ in range(2):
        call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return round(flop * repeats / (time.perf_counter() - start) / 1e9, 1)


def sgemm_gflops(quick: bool, dtype: str = "fp32") -> float:
    """The machine's practical peak: GFLOP/s of a large square matrix product (4096), in fp32 or bf16."""
    import torch

    n = 512 if quick else 4096
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.rand(n, n).to(kind), torch.rand(n, n).to(kind)
    return _gflops(lambda: a @ b, 2 * n**3, 3 if quick else 5)


def conv_gflops(quick: bool, dtype: str = "fp32") -> float:
    """GFLOP/s of a large 1x1 convolution through oneDNN (1024 -> 1024 channels at 64x64, channels-last), in fp32 or
    bf16: the other practical peak, since MKL's matrix product may not use every vector unit of a non-Intel CPU
    while oneDNN's convolutions do."""
    import torch
    import torch.nn.functional as F

    c, side = (128, 16) if quick else (1024, 64)
    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    x = torch.rand(1, c, side, side).to(kind).contiguous(memory_format=torch.channels_last)
    w = torch.rand(c, c, 1, 1).to(kind).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _gflops(lambda: F.conv2d(x, w), 2 * c * c * side * side, 3 if quick else 10)


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
        f"GPU: {m['gpu'] or 'none'}, torch {m['torch']}, Python {m['python']}. "
        f"Run {results['date']}, {results['minutes']:.0f} min; load: {results['load_note']}.",
        "",
        "| preset | device | batch | size | backend | gate | precision | p50 ms | p95 ms | images/s | GMAC/img "
        "| GFLOP/s | peak RSS MiB | CUDA peak MiB | x naive |",
        "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['device']} | {r['batch_size']} | {r['image_size']} | {r['backend']} "
                         f"| {r['gate']} | {r.get('precision', 'fp32')} | error: {' '.join(r['error'])} "
                         "|||||||")  # fmt: skip
            continue
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['batch_size']} | {r['image_size']} | {r['backend']} | {r['gate']} "
            f"| {r.get('precision', 'fp32')} | {_fmt(r['latency_p50_ms'])} | {_fmt(r['latency_p95_ms'])} "
            f"| {_fmt(r['images_per_s'], '.2f')} "
            f"| {_fmt(r['gmac_per_image'], '.2f')} | {_fmt(r['gflops_achieved'])} | {_fmt(r['peak_rss_mib'], '.0f')} "
            f"| {_fmt(r['cuda_peak_mib'], '.0f')} | {_fmt(r.get('speedup_vs_naive'), '.2f')} |"
        )
    pre = results["preprocess_ms"]
    req = results["request"]
    compiled = [r for r in results["rows"] if r.get("backend") == "compiled" and r.get("first_call_ms")]
    lines += [
        "",
        "Preprocessing (plane removal on a generated 800x800 xyz + resizing; not in the rows above): "
        + ", ".join(f"{ms:.1f} ms to {size}px" for size, ms in pre.items())
        + ".",
        "",
        f"Whole predict request, {req.get('model', 'lite')} at {req['image_size']}px ({req['input']}, gate "
        f"{req['gate']}, backend {req.get('backend', 'optimized')}): "
        f"{req['total_ms']:.1f} ms (" + ", ".join(f"{k} {v:.1f} ms" for k, v in req["parts_ms"].items()) + ").",
        "",
        "`compiled` rows (torch.compile of the optimized model, opt-in backend): the first call compiles "
        "(shorter when inductor's on-disk cache already holds the graph), "
        + ", ".join(
            f"{r['preset']} {r['image_size']}px {r['gate']} {r.get('precision', 'fp32')} "
            f"{r['first_call_ms'] / 1000:.0f} s"
            for r in compiled
        )
        + "; the rows time the calls after it.",
        "",
        f"Peak for the GFLOP/s column (measured in the same run): a 4096x4096 fp32 matrix product (MKL) runs at "
        f"{results['sgemm_gflops']:.0f} GFLOP/s"
        + (
            f" and a 1024-channel 1x1 convolution at 64x64 (oneDNN) at {results['conv_gflops']:.0f} GFLOP/s; the "
            "larger is the practical fp32 peak of these cores"
            if results.get("conv_gflops")
            else ", the practical fp32 peak of these cores"
        )
        + (
            f". In bf16 (this CPU computes it natively) the product runs at {results['bf16_gemm_gflops']:.0f} and "
            f"the convolution at {results.get('bf16_conv_gflops') or 0:.0f} GFLOP/s, the peak for bf16 rows."
            if results.get("bf16_gemm_gflops")
            else "; this CPU has no native bf16, so there are no bf16 rows."
        ),
        "",
        "Targets:",
    ]
    for name, t in results["targets"].items():
        lines.append(f"- {name}: target {t['target']}, measured {t['measured']} -> {'met' if t['met'] else 'missed'}")
    if not results["machine"]["gpu"]:
        lines += [
            "",
            "No GPU was available: there are no CUDA rows. The CUDA code path (bf16 autocast, batching, CUDA peak "
            "memory) is the same script and `benchmarks/bench.py --device cuda`; here it ran on the CPU only.",
        ]
    return "\n".join(lines)


def targets(rows: list[dict], request: dict) -> dict:
    def find(**kw):
        return next((r for r in rows if all(r.get(k) == v for k, v in kw.items()) and "error" not in r), None)

    row_256 = {"preset": "paper", "device": "cpu", "backend": "optimized", "batch_size": 1, "image_size": 256}
    paper = find(**row_256, gate="control", precision="fp32")
    paper_close = find(**row_256, gate="close", precision="fp32")
    paper_bf16 = find(**row_256, gate="control", precision="bf16")
    lite = [r for r in rows if r.get("preset") == "lite" and r.get("device") == "cpu" and r.get("batch_size") == 1
            and r.get("image_size") == 256 and r.get("backend") != "naive" and "error" not in r]  # fmt: skip
    best = max(lite, key=lambda r: r["images_per_s"], default=None)
    best_control = max((r for r in lite if r.get("gate") == "control"), key=lambda r: r["images_per_s"], default=None)
    best_control_fp32 = max(
        (r for r in lite if r.get("gate") == "control" and r.get("precision", "fp32") == "fp32"),
        key=lambda r: r["images_per_s"],
        default=None,
    )
    out = {}
    if paper:
        out["paper CPU batch 1 speed-up vs naive (gate control)"] = {
            "target": TARGETS["paper_cpu_speedup"], "measured": paper.get("speedup_vs_naive"),
            "met": (paper.get("speedup_vs_naive") or 0) >= TARGETS["paper_cpu_speedup"]}  # fmt: skip
    if paper_bf16:
        out["paper CPU batch 1 speed-up vs naive fp32 (gate control, bf16, opt-in)"] = {
            "target": TARGETS["paper_cpu_speedup"], "measured": paper_bf16.get("speedup_vs_naive"),
            "met": (paper_bf16.get("speedup_vs_naive") or 0) >= TARGETS["paper_cpu_speedup"]}  # fmt: skip
    if paper_close:
        out["paper CPU batch 1 speed-up vs naive (gate close)"] = {
            "target": TARGETS["paper_cpu_speedup"], "measured": paper_close.get("speedup_vs_naive"),
            "met": (paper_close.get("speedup_vs_naive") or 0) >= TARGETS["paper_cpu_speedup"]}  # fmt: skip
    if best:
        out[f"lite CPU 256px batch 1 images/s (best: {best['backend']}, gate {best['gate']}, "
            f"{best.get('precision', 'fp32')})"] = {
            "target": TARGETS["lite_cpu_images_per_s"], "measured": best["images_per_s"],
            "met": best["images_per_s"] >= TARGETS["lite_cpu_images_per_s"]}  # fmt: skip
    for r in {id(r): r for r in (best_control, best_control_fp32) if r}.values():  # the default gate, both heads
        out[f"lite CPU 256px batch 1 images/s, gate control (best: {r['backend']}, {r.get('precision', 'fp32')})"] = {
            "target": TARGETS["lite_cpu_images_per_s"], "measured": r["images_per_s"],
            "met": r["images_per_s"] >= TARGETS["lite_cpu_images_per_s"]}  # fmt: skip
    out["whole request ms (lite)"] = {"target": TARGETS["request_ms"], "measured": request["total_ms"],
                                      "met": request["total_ms"] < TARGETS["request_ms"]}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: exercise the script, numbers are meaningless")
    parser.add_argument("--out", default=str(HERE), help="folder for results.json and README.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the table from the folder's results.json")
    args = parser.parse_args()
    if args.render:
        results = json.loads((Path(args.out) / "results.json").read_text())
        results["targets"] = targets(results["rows"], results["request"])
        write_report(results, Path(args.out))
        return
    import torch
    from bench import time_preprocessing

    from easynet.runtime import configure_threads, machine, native_bf16

    configure_threads()
    start, busy = time.time(), training_running()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for preset, batch, size, runs in CPU_ROWS if device == "cpu" else CUDA_ROWS:
            if args.quick:
                size, batch = 32, min(batch, 2)
            for backend, gate, *precision in runs:
                precision = precision[0] if precision else "fp32"
                if precision == "bf16" and not native_bf16(torch.device(device)):
                    continue  # emulated bf16 is slower than fp32 and would only repeat the fp32 row
                row = bench_row(preset, device, batch, size, backend, gate, args.quick, precision)
                row["gate"] = gate
                print(json.dumps({k: row.get(k) for k in ("preset", "device", "batch_size", "image_size", "backend",
                                                          "gate", "precision", "latency_p50_ms", "error")}),
                      flush=True)  # fmt: skip
                rows.append(row)
    add_ratios(rows)
    sizes = (32,) if args.quick else (256, 128)
    preprocess = {str(s): round(time_preprocessing(s, repeats=2 if args.quick else 5), 1) for s in sizes}
    request = request_timing(args.quick)
    peak, conv = sgemm_gflops(args.quick), conv_gflops(args.quick)
    bf16 = native_bf16(torch.device("cpu"))
    peak_bf16 = sgemm_gflops(args.quick, "bf16") if bf16 else None
    conv_bf16 = conv_gflops(args.quick, "bf16") if bf16 else None
    busy = busy or training_running()
    load = os.getloadavg()[0]
    note = ("taken while other training/tests were running (numbers are pessimistic)" if busy or load > 2.5
            else "no training running")  # fmt: skip
    results = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "minutes": (time.time() - start) / 60,
        "load_note": f"{note}; 1-min load average at the end {load:.2f}",
        "quick": args.quick,
        "rows": rows,
        "sgemm_gflops": peak,
        "conv_gflops": conv,
        "bf16_gemm_gflops": peak_bf16,
        "bf16_conv_gflops": conv_bf16,
        "preprocess_ms": preprocess,
        "request": request,
        "targets": targets(rows, request),
    }
    write_report(results, Path(args.out))


def write_report(results: dict, out: Path) -> None:
    """results.json and the table between the markers of README.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    readme = out / "README.md"
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{TABLE_BEGIN}\n{TABLE_END}\n"
    if TABLE_BEGIN not in text:
        text += f"\n{TABLE_BEGIN}\n{TABLE_END}\n"
    head, rest = text.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    readme.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}")
    print(table)


if __name__ == "__main__":
    main()
