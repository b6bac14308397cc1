"""Load test of the web app: concurrent gradio_client clients mix /predict and /compare while a fine-tune trains.

    python benchmarks/load_test.py [--clients 16] [--duration 60] [--max-requests 100]

Starts the app on a free 127.0.0.1 port in this process, with a temporary workspace. Uses the shipped
samples/ + checkpoints/ when both exist, else trains a tiny checkpoint on a generated MVTec 3D-AD tree (as
tests/conftest.py does). Checks that every request is answered and that each score equals the single-client
reference of the same sample (for /compare: each gate's score); each client is its own session and loops for
--duration seconds (at most --max-requests requests; bounded). Single-request latencies are measured first on the
idle server. Writes benchmarks/load_test.json and the "Load test" section of benchmarks/LOAD.md. Exits non-zero
when a request fails or a score differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "benchmarks" / "load_test.json"
OUT_MD = REPO / "benchmarks" / "LOAD.md"
SCORE_TOLERANCE = 1e-5
FINETUNE_STEPS = 100_000  # cancelled at the end; only there to load the machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def prepare(workspace: Path) -> tuple[str, list[tuple[str, str]], Path]:
    """(model name, [(rgb, xyz)] samples, a zip to fine-tune on)."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import make_mvtec3d_tree

    data = workspace.parent / "data"
    make_mvtec3d_tree(data, "toy", size=64, n_train=4, n_val=2, test={"good": 2, "hole": 2})
    archive = workspace.parent / "toy.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((data / "toy").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(data).as_posix())
    from app import workspace as ws

    shipped = ws.sample_pairs()
    shipped = [(r, d) for r, d in shipped if d and (REPO / "checkpoints" / f"{Path(r).parent.name}.pt").is_file()]
    if shipped:
        return Path(shipped[0][0]).parent.name, shipped[:4], archive
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
    from easynet.pipeline import train_category

    (workspace / "models").mkdir(parents=True, exist_ok=True)
    train_category(
        data,
        "toy",
        workspace / "models" / "toy.pt",
        model_cfg=MODEL_PRESETS["lite"].replace(image_size=32),
        train_cfg=TRAIN_PRESETS["official"].replace(steps=2, batch_size=2),
        progress=False,
        device="cpu",
    )
    samples = [
        (str(data / f"toy/test/{kind}/rgb/00{i}.png"), str(data / f"toy/test/{kind}/xyz/00{i}.tiff"))
        for kind in ("good", "hole")
        for i in range(2)
    ]
    return "toy", samples, archive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds during which clients send requests")
    parser.add_argument("--max-requests", type=int, default=100, help="per client (a bound on the loop)")
    parser.add_argument("--note", default="", help="a sentence about the run, added to the report")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 0 < args.duration <= 600:
        raise SystemExit("--clients must be 1..64 and --duration 0..600 s (a bounded run on 127.0.0.1)")

    tmp = Path(tempfile.mkdtemp(prefix="easynet-load-"))
    os.environ["EASYNET_WORKSPACE"] = str(tmp / "workspace")
    os.environ.setdefault("EASYNET_MAX_MODELS", "2")
    model, samples, archive = prepare(tmp / "workspace")

    import importlib.util

    from gradio_client import Client, handle_file

    spec = importlib.util.spec_from_file_location("easynet_app_main", REPO / "app.py")
    app_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_main)
    demo = app_main.demo
    demo.launch(
        prevent_thread_lock=True,
        server_name="127.0.0.1",
        server_port=_free_port(),
        quiet=True,
        **app_main.launch_settings(),
    )
    url = demo.local_url

    def predict(client: Client, sample: tuple[str, str]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = client.predict(handle_file(sample[0]), handle_file(sample[1]), model, "control", api_name="/predict")
        score = next(r for r in out if isinstance(r, dict) and "score" in r)["score"]
        return score, time.perf_counter() - t0

    def compare(client: Client, sample: tuple[str, str]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = client.predict(handle_file(sample[0]), handle_file(sample[1]), model, api_name="/compare")
        return {g: r["score"] for g, r in out[-1].items()}, time.perf_counter() - t0

    calls = {"/predict": predict, "/compare": compare}

    def matches(got: Any, want: Any) -> bool:
        if isinstance(want, dict):
            return set(got) == set(want) and all(abs(got[g] - want[g]) <= SCORE_TOLERANCE for g in want)
        return abs(got - want) <= SCORE_TOLERANCE

    main_client = Client(url, verbose=False)
    reference, single = {}, {name: [] for name in calls}
    for name, call in calls.items():  # single client, idle server: the answers and latencies to compare with
        for s in samples:
            reference[name, s[0]], seconds = call(main_client, s)
            single[name].append(seconds)
    job_id, status, _ = main_client.predict(
        "zip", None, None, handle_file(str(archive)), "", FINETUNE_STEPS, api_name="/finetune_start"
    )
    deadline = time.time() + 300
    while main_client.predict(job_id, api_name="/finetune_status")[0]["state"] == "queued" and time.time() < deadline:
        time.sleep(0.5)

    results: list[dict] = []
    lock = threading.Lock()
    stop_at = time.time() + args.duration

    def worker(index: int) -> None:
        client = Client(url, verbose=False)
        try:
            for k in range(args.max_requests):
                if time.time() > stop_at:
                    break
                sample = samples[(index + k) % len(samples)]
                name = "/compare" if (index + k) % 2 else "/predict"
                try:
                    got, seconds = calls[name](client, sample)
                    row = {
                        "client": index,
                        "api": name,
                        "sample": Path(sample[0]).name,
                        "ok": True,
                        "seconds": seconds,
                        "matches": matches(got, reference[name, sample[0]]),
                    }
                except Exception as err:  # a failed request is a result to report
                    row = {"client": index, "api": name, "sample": Path(sample[0]).name, "ok": False, "error": str(err)}
                with lock:
                    results.append(row)
        finally:
            client.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(worker, range(args.clients)))
    wall = time.perf_counter() - t0
    job = main_client.predict(job_id, api_name="/finetune_status")[0]
    main_client.predict(job_id, api_name="/finetune_cancel")
    while main_client.predict(job_id, api_name="/finetune_status")[0]["state"] in ("queued", "running"):
        time.sleep(0.5)
    main_client.close()
    demo.close()

    latencies = np.array([r["seconds"] for r in results if r["ok"]])

    def percentiles(values: list[float]) -> dict[str, float | None]:
        a = np.array(values)
        return {q: (round(float(np.percentile(a, int(q[1:]))), 3) if a.size else None) for q in ("p50", "p95")}

    per_api = {
        name: {
            "requests": sum(r["api"] == name for r in results),
            "single_request_s": percentiles(single[name])["p50"],
            **percentiles([r["seconds"] for r in results if r["ok"] and r["api"] == name]),
        }
        for name in calls
    }
    report = {
        "clients": args.clients,
        "duration_s": args.duration,
        "requests_sent": len(results),
        "requests_answered": int(sum(r["ok"] for r in results)),
        "requests_failed": int(sum(not r["ok"] for r in results)),
        "scores_differing": int(sum(r["ok"] and not r["matches"] for r in results)),
        "per_api": per_api,
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 3) if latencies.size else None,
        "latency_max_s": round(float(latencies.max()), 3) if latencies.size else None,
        "wall_s": round(wall, 1),
        "throughput_rps": round(len(latencies) / wall, 3) if wall else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "model": model,
        "samples": [Path(s[0]).name for s in samples],
        "finetune_job_during_load": {"id": job_id, "state": job["state"], "step": job["step"]},
        "max_models": int(os.environ["EASYNET_MAX_MODELS"]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "errors": sorted({r["error"] for r in results if not r["ok"]})[:5],
        "note": args.note,
    }
    OUT_JSON.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))
    ok = report["requests_failed"] == 0 and report["scores_differing"] == 0 and report["requests_sent"] > 0
    return 0 if ok else 1


def write_markdown(r: dict) -> None:
    """Replace the "Load test" section of LOAD.md (the rest of the file is kept)."""
    rows = "".join(
        f"| `{name}` | {a['requests']} | {a['single_request_s']} s | {a['p50']} s | {a['p95']} s |\n"
        for name, a in r["per_api"].items()
    )
    section = (
        "## Load test\n\n"
        f"`python benchmarks/load_test.py --clients {r['clients']} --duration {r['duration_s']:g}` (numbers below: "
        "its last run; raw in `load_test.json`).\n\n"
        f"{r['clients']} concurrent `gradio_client` clients (each its own session) for {r['duration_s']:g} s, "
        f"alternating `/predict` and `/compare` (RGB + xyz, model `{r['model']}`) against one app process on "
        f"127.0.0.1, while a fine-tune job of another session trained in the same process (job "
        f"{r['finetune_job_during_load']['id']}, {r['finetune_job_during_load']['state']} at step "
        f"{r['finetune_job_during_load']['step']} when the clients finished, then cancelled).\n\n"
        "| answered | failed | answers differing from the single-client reference | max latency | throughput | "
        "peak RSS (server + clients) |\n|---|---|---|---|---|---|\n"
        f"| {r['requests_answered']}/{r['requests_sent']} | {r['requests_failed']} | {r['scores_differing']} | "
        f"{r['latency_max_s']} s | {r['throughput_rps']} req/s | {r['peak_rss_mb']} MB |\n\n"
        "| endpoint | requests under load | single request (idle server, p50) | p50 under load | p95 under load |\n"
        f"|---|---|---|---|---|\n{rows}\n"
        f"Machine: {r['machine']}. Gradio runs each event one request at a time by default, so latency under load "
        "is mostly queueing: p95 is about clients x the single-request time. Memory stays bounded: one model per "
        f"name in an LRU of EASYNET_MAX_MODELS={r['max_models']}, uploads are refused above EASYNET_MAX_UPLOAD_MB, "
        f"images above EASYNET_MAX_PIXELS. {r['note']}\n\n"
    )
    text = OUT_MD.read_text() if OUT_MD.is_file() else "# Load\n\n"
    start = text.find("## Load test")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    OUT_MD.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
