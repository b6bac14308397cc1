"""Benchmark code (not part of the library): network latency, throughput, memory and GMACs per backend,
preprocessing and whole requests; `python benchmarks/bench.py --help` times one row.

The network is timed on random inputs after a warm-up; preprocessing (plane removal on a generated
800x800 organised point cloud + resizing) is timed separately. Backends are the Predictor's ("eager",
"optimized", "onnx") plus "naive": the literal authors' forward, ``model(rgb, depth, naive=True)`` in fp32
with both heads (up-sample, concatenate, 1x1 head), the reference that speed-ups are quoted against.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easynet.backends import make_runner
from easynet.gate import runner_mode
from easynet.model import EasyNet, count_macs, count_parameters
from easynet.runtime import machine

PREPROCESS_SIZE = 800  # MVTec 3D-AD scans are about 800x800
FLOP_COUNT_SIZE = 64  # GMACs are counted at this size and scaled by area (exact for convs; SE layers < 0.1 %)
RSS_POLL_S = 0.005


@dataclass
class BenchResult:
    """One benchmark row (times in milliseconds, memory in MiB)."""

    backend: str
    device: str
    gate: str
    batch_size: int
    image_size: int
    parameters: int
    gmac_per_image: float
    latency_p50_ms: float
    latency_p95_ms: float
    images_per_s: float
    gflops_achieved: float
    peak_rss_mib: float
    cuda_peak_mib: float | None
    preprocess_ms: float | None
    iterations: int
    threads: int
    precision: str = "fp32"
    first_call_ms: float | None = None  # the first warm-up call: for the compiled backend, mostly compiling

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RssPeak:
    """Polls a process's RSS (psutil; this process by default) in a thread; ``peak`` is the largest value seen, in
    bytes."""

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self._proc, self._stop, self.peak = psutil.Process(pid), threading.Event(), 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(RSS_POLL_S)

    def __enter__(self) -> RssPeak:
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def count_gmacs(model: EasyNet, backend: str, gate: str, image_size: int) -> float:
    """Multiply-accumulates per image of the work ``backend`` does for ``gate`` (counted at a small size and scaled
    by area). The onnx graph computes both heads for open/control; the torch paths run one head per image."""
    small = min(image_size, FLOP_COUNT_SIZE)
    model = model.cpu().eval()
    if backend == "naive":
        macs = count_macs(model, small, naive=True)
    elif backend == "onnx" and gate != "close":
        macs = count_macs(model, small)
    else:
        macs = count_macs(model, small, gate)
    return macs * (image_size / small) ** 2


def time_preprocessing(image_size: int, repeats: int = 3) -> float:
    """Median ms of the Predictor's preprocessing (plane removal + resizing) on an 800x800 scene."""
    from easynet.config import MODEL_PRESETS
    from easynet.data.synthetic import CATEGORIES, generate_sample
    from easynet.inputs import prepare_input

    sample = generate_sample(next(iter(CATEGORIES)), "good", PREPROCESS_SIZE, np.random.default_rng(0))
    cfg = MODEL_PRESETS["lite"].replace(image_size=image_size)
    cfg = cfg.replace(depth_scale=0.02) if cfg.depth_encoding == "metric" else cfg  # as if fitted, metres
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        prepare_input(sample.rgb, sample.xyz, cfg)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def bench_network(
    model: EasyNet,
    device: torch.device,
    backend: str = "optimized",
    gate: str = "control",
    batch_size: int = 1,
    image_size: int | None = None,
    warmup: int = 2,
    iterations: int = 10,
    min_seconds: float = 0.0,
    preprocess: bool = True,
    precision: str = "fp32",
) -> BenchResult:
    """Time ``iterations`` calls (at least ``min_seconds`` worth) after ``warmup`` calls.

    The gate decision uses alpha = 0; under the score rule (``model.cfg.gate_rule``) control times what the
    Predictor runs, one pass through both heads. CUDA times are synchronised. ``naive``
    always computes both heads in fp32; ``precision`` is a resolved one ("fp32" or "bf16",
    runtime.resolve_precision).
    """
    size = image_size or model.cfg.image_size
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch_size, 3, size, size, generator=gen)
    depth = torch.rand(batch_size, 1, size, size, generator=gen) if model.cfg.has_depth else None
    # what the Predictor runs for this gate (under the score rule, control is one pass through both heads)
    run_gate = gate if backend == "naive" else runner_mode(gate, model.cfg.gate_rule, depth is not None)
    gmac = count_gmacs(model, backend, run_gate, size)
    if backend == "naive":
        model = model.to(device).eval()
        rgb_d, depth_d = rgb.to(device), None if depth is None else depth.to(device)

        def call() -> Any:
            with torch.inference_mode():
                return model(rgb_d, depth_d, naive=True)
    else:
        runner = make_runner(model, device, backend, precision)

        def call() -> Any:
            return runner(rgb, depth, run_gate, 0.0)

    cuda = device.type == "cuda"
    first_call_s = None  # the first warm-up call: for the compiled backend, mostly compiling
    for i in range(warmup):
        start = time.perf_counter()
        call()
        if i == 0:
            first_call_s = time.perf_counter() - start
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times: list[float] = []
    with RssPeak() as rss:
        total_start = time.perf_counter()
        while len(times) < iterations or time.perf_counter() - total_start < min_seconds:
            start = time.perf_counter()
            call()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    p50, p95 = (float(np.percentile(times, q)) for q in (50, 95))
    return BenchResult(
        backend=backend,
        device=str(device),
        gate="both heads" if backend == "naive" else gate,
        batch_size=batch_size,
        image_size=size,
        parameters=count_parameters(model),
        gmac_per_image=round(gmac, 3),
        latency_p50_ms=round(p50 * 1000, 2),
        latency_p95_ms=round(p95 * 1000, 2),
        images_per_s=round(batch_size / p50, 2),
        gflops_achieved=round(2 * gmac * batch_size / p50, 1),
        peak_rss_mib=round(rss.peak / 2**20, 1),
        cuda_peak_mib=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        preprocess_ms=round(time_preprocessing(size), 1) if preprocess else None,
        iterations=len(times),
        threads=torch.get_num_threads(),
        precision="fp32" if backend in ("naive", "onnx") else precision,
        first_call_ms=None if first_call_s is None else round(first_call_s * 1000, 1),
    )


def bench_request(checkpoint: str | Path, repeats: int = 5, device: str = "cpu", backend: str = "optimized"):
    """Median ms of the whole Predictor request on 800x800 files: decode png + tiff, preprocessing, network,
    and the pictures the app shows (heat map, overlay, reconstructions via easynet.visualize).

    Returns (total ms, {"preprocess", "network", "pictures"} ms of the median request).
    """
    import tifffile
    from PIL import Image

    from easynet.data.synthetic import CATEGORIES, generate_sample
    from easynet.predict import Predictor
    from easynet.visualize import colorize, depth_preview, overlay, to_uint8

    sample = generate_sample(next(iter(CATEGORIES)), "good", PREPROCESS_SIZE, np.random.default_rng(0))
    predictor = Predictor.from_checkpoint(checkpoint, device, backend=backend)
    with tempfile.TemporaryDirectory() as tmp:
        rgb_path, xyz_path = Path(tmp) / "scan.png", Path(tmp) / "scan.tiff"
        Image.fromarray(sample.rgb).save(rgb_path)
        tifffile.imwrite(xyz_path, sample.xyz, photometric="rgb")
        runs = []
        for _ in range(repeats + 1):  # the first call warms up
            start = time.perf_counter()
            p = predictor.predict(rgb_path, xyz_path)
            t_pic = time.perf_counter()
            pictures = [colorize(p.heatmap), overlay(p.inputs.rgb, p.heatmap), to_uint8(p.rec_rgb)]
            pictures.append(depth_preview(p.rec_depth))
            end = time.perf_counter()
            parts = {k: v * 1000 for k, v in p.timings.items()}
            runs.append(((end - start) * 1000, {**parts, "pictures": (end - t_pic) * 1000}))
    runs = sorted(runs[1:], key=lambda r: r[0])
    total, parts = runs[len(runs) // 2]
    return round(total, 1), {k: round(v, 1) for k, v in parts.items()}


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/bench.py`: one benchmark row of a preset or checkpoint, printed and optionally as JSON."""
    import argparse
    import json
    import sys

    from easynet.config import MODEL_PRESETS, PRECISIONS
    from easynet.runtime import configure_threads, resolve_device, resolve_precision

    parser = argparse.ArgumentParser(description="latency, throughput, memory and GMACs of the network")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(MODEL_PRESETS), default="lite")
    source.add_argument("--checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--backend", choices=("optimized", "eager", "onnx", "compiled", "naive"), default="optimized")
    parser.add_argument("--gate", choices=("close", "open", "control"), default="control")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=0.0, help="keep timing until this much time has passed")
    parser.add_argument("--no-preprocess", action="store_true", help="skip timing the 800x800 preprocessing")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--json")
    a = parser.parse_args(argv)
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
    r = bench_network(
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
    print(
        f"{r.backend} {r.precision} on {r.device}, gate {r.gate}, batch {r.batch_size} at {r.image_size}px: "
        f"p50 {r.latency_p50_ms:.1f} ms, p95 {r.latency_p95_ms:.1f} ms, {r.images_per_s:.1f} images/s, "
        f"{r.gmac_per_image:.2f} GMAC/image, {r.gflops_achieved:.1f} GFLOP/s, {r.parameters / 1e6:.2f} M parameters, "
        f"peak RSS {r.peak_rss_mib:.0f} MiB" + (f", CUDA peak {r.cuda_peak_mib:.0f} MiB" if r.cuda_peak_mib else "")
    )
    if r.preprocess_ms is not None:
        print(f"preprocessing (800x800 plane removal + resize): {r.preprocess_ms:.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps({**r.to_json(), "machine": machine()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
