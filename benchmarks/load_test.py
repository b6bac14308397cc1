"""Load test of the web app: concurrent gradio_client clients mix /predict and /compare while a fine-tune trains.

    python benchmarks/load_test.py [--clients 16] [--duration 60] [--max-requests 100] [--no-finetune]
                                   [--concurrency N]

Starts `python app.py` on a free 127.0.0.1 port in its own process, with a temporary workspace. Uses the shipped
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
import subprocess
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
sys.path.insert(0, str(REPO))
from app.ui import DEFAULT_CONCURRENCY  # noqa: E402

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
    parser.add_argument(
        "--finetune",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a fine-tune job of another session in the server during the load (default: on)",
    )
    parser.add_argument("--concurrency", type=int, help="EASYNET_CONCURRENCY of the server (default: the app's)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 0 < args.duration <= 600:
        raise SystemExit("--clients must be 1..64 and --duration 0..600 s (a bounded run on 127.0.0.1)")

    tmp = Path(tempfile.mkdtemp(prefix="easynet-load-"))
    os.environ["EASYNET_WORKSPACE"] = str(tmp / "workspace")
    os.environ.setdefault("EASYNET_MAX_MODELS", "2")
    if args.concurrency is not None:
        os.environ["EASYNET_CONCURRENCY"] = str(args.concurrency)
    model, samples, archive = prepare(tmp / "workspace")
    log = tmp / "server.log"
    server, url = start_server(log)
    try:
        report = run_load(args, url, server, log, model, samples, archive)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    OUT_JSON.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)
    print(json.dumps(report, indent=2))
    ok = report["requests_failed"] == 0 and report["scores_differing"] == 0 and report["requests_sent"] > 0
    return 0 if ok else 1


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free 127.0.0.1 port, as it is deployed: the clients' own Python work (HTTP, JSON,
    downloads) does not share the server's interpreter lock; both still share the machine's cores."""
    port = _free_port()
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")],
            cwd=REPO,
            env={**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return server, f"http://127.0.0.1:{port}/"


def connect(url: str, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> Any:
    """A gradio_client Client once the app answers (it imports torch and builds the page first)."""
    from gradio_client import Client

    deadline = time.time() + timeout
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the app exited before answering: {log.read_text()[-2000:]}")
        try:
            return Client(url, verbose=False)
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1.0)


class Calls:
    """The two endpoints the clients call, each returning (scores to compare, seconds)."""

    def __init__(self, model: str) -> None:
        from gradio_client import handle_file

        self.model, self.file = model, handle_file

    def predict(self, client: Any, sample: tuple[str, str]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = client.predict(self.file(sample[0]), self.file(sample[1]), self.model, "control", api_name="/predict")
        score = next(r for r in out if isinstance(r, dict) and "score" in r)["score"]
        return score, time.perf_counter() - t0

    def compare(self, client: Any, sample: tuple[str, str]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = client.predict(self.file(sample[0]), self.file(sample[1]), self.model, api_name="/compare")
        return {g: r["score"] for g, r in out[-1].items()}, time.perf_counter() - t0

    def by_name(self) -> dict[str, Any]:
        return {"/predict": self.predict, "/compare": self.compare}


def matches(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return set(got) == set(want) and all(abs(got[g] - want[g]) <= SCORE_TOLERANCE for g in want)
    return abs(got - want) <= SCORE_TOLERANCE


def start_finetune(client: Any, archive: Path) -> str:
    """Starts the fine-tune job that loads the server during the run; returns its id once it left the queue."""
    from gradio_client import handle_file

    job_id, _, _ = client.predict(
        "zip", None, None, handle_file(str(archive)), "", FINETUNE_STEPS, api_name="/finetune_start"
    )
    deadline = time.time() + 300
    while client.predict(job_id, "", api_name="/finetune_status")[0]["state"] == "queued" and time.time() < deadline:
        time.sleep(0.5)
    return job_id


def stop_finetune(client: Any, job_id: str) -> dict:
    job = client.predict(job_id, "", api_name="/finetune_status")[0]
    client.predict(job_id, "", api_name="/finetune_cancel")
    while client.predict(job_id, "", api_name="/finetune_status")[0]["state"] in ("queued", "running"):
        time.sleep(0.5)
    return {"id": job_id, "state": job["state"], "step": job["step"]}


def run_load(
    args: argparse.Namespace, url: str, server: subprocess.Popen, log: Path, model: str, samples, archive
) -> dict:
    """Single requests on the idle server, then the clients (and the fine-tune job); returns the report."""
    from bench import RssPeak
    from gradio_client import Client

    calls = Calls(model).by_name()
    main_client = connect(url, server, log)
    reference, single = {}, {name: [] for name in calls}
    for name, call in calls.items():  # single client, idle server: the answers and latencies to compare with
        for s in samples:
            reference[name, s[0]], seconds = call(main_client, s)
            single[name].append(seconds)
    job_id = start_finetune(main_client, archive) if args.finetune else None

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
                row = {"client": index, "api": name, "sample": Path(sample[0]).name}
                try:
                    got, seconds = calls[name](client, sample)
                    row |= {"ok": True, "seconds": seconds, "matches": matches(got, reference[name, sample[0]])}
                except Exception as err:  # a failed request is a result to report
                    row |= {"ok": False, "error": str(err)}
                with lock:
                    results.append(row)
        finally:
            client.close()

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds(server.pid), _own_cpu_seconds()
    with RssPeak(server.pid) as server_rss, ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(worker, range(args.clients)))
    wall = time.perf_counter() - t0
    cpu = {"server": _cpu_seconds(server.pid) - cpu0[0], "clients": _own_cpu_seconds() - cpu0[1]}
    job = stop_finetune(main_client, job_id) if job_id is not None else None
    main_client.close()
    answered = max(1, sum(r["ok"] for r in results))
    return summarise(args, results, single, wall, server_rss.peak) | {
        "cpu_seconds_per_request": {k: round(v / answered, 3) for k, v in cpu.items()},
        "model": model,
        "samples": [Path(s[0]).name for s in samples],
        "finetune_job_during_load": job,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentiles(values: list[float]) -> dict[str, float | None]:
    a = np.array(values)
    return {q: (round(float(np.percentile(a, int(q[1:]))), 3) if a.size else None) for q in ("p50", "p95")}


def summarise(args: argparse.Namespace, results: list[dict], single: dict, wall: float, server_rss: int) -> dict:
    latencies = np.array([r["seconds"] for r in results if r["ok"]])
    per_api = {}
    for name, times in single.items():
        row = {
            "requests": sum(r["api"] == name for r in results),
            "single_request_s": _percentiles(times)["p50"],
            **_percentiles([r["seconds"] for r in results if r["ok"] and r["api"] == name]),
        }
        ratio = row["p95"] / row["single_request_s"] if row["p95"] and row["single_request_s"] else None
        per_api[name] = {**row, "p95_over_single": round(ratio, 2) if ratio else None}
    return {
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
        "server_peak_rss_mb": round(server_rss / 2**20, 1),
        "clients_peak_rss_mb": round(_peak_rss_mb(), 1),
        "concurrency": int(os.environ.get("EASYNET_CONCURRENCY") or DEFAULT_CONCURRENCY),
        "max_models": int(os.environ["EASYNET_MAX_MODELS"]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "errors": sorted({r["error"] for r in results if not r["ok"]})[:5],
        "note": args.note,
    }


def write_markdown(r: dict) -> None:
    """Replace the "Load test" section of LOAD.md (the rest of the file is kept)."""
    rows = "".join(
        f"| `{name}` | {a['requests']} | {a['single_request_s']} s | {a['p50']} s | {a['p95']} s | "
        f"{a['p95_over_single']}x |\n"
        for name, a in r["per_api"].items()
    )
    job = r["finetune_job_during_load"]
    beside = (
        f"while a fine-tune job of another session trained in the server (job {job['id']}, {job['state']} at step "
        f"{job['step']} when the clients finished, then cancelled)"
        if job
        else "with nothing else running"
    )
    flag = "" if job else " --no-finetune"
    section = (
        "## Load test\n\n"
        f"`python benchmarks/load_test.py --clients {r['clients']} --duration {r['duration_s']:g}{flag}` (numbers "
        "below: its last run; raw in `load_test.json`).\n\n"
        f"{r['clients']} concurrent `gradio_client` clients (each its own session) for {r['duration_s']:g} s, "
        f"alternating `/predict` and `/compare` (RGB + xyz, model `{r['model']}`) against `python app.py` in its own "
        f"process on 127.0.0.1 (EASYNET_CONCURRENCY={r['concurrency']}: network requests served at once), {beside}."
        "\n\n"
        "| answered | failed | answers differing from the single-client reference | max latency | throughput | "
        "peak RSS server / clients |\n|---|---|---|---|---|---|\n"
        f"| {r['requests_answered']}/{r['requests_sent']} | {r['requests_failed']} | {r['scores_differing']} | "
        f"{r['latency_max_s']} s | {r['throughput_rps']} req/s | {r['server_peak_rss_mb']} / "
        f"{r['clients_peak_rss_mb']} MB |\n\n"
        "| endpoint | requests under load | single request (idle server, p50) | p50 under load | p95 under load | "
        "p95 / single |\n"
        f"|---|---|---|---|---|---|\n{rows}\n"
        + (
            f"CPU per answered request: server {r['cpu_seconds_per_request']['server']} s, clients "
            f"{r['cpu_seconds_per_request']['clients']} s.\n\n"
            if r.get("cpu_seconds_per_request")
            else ""
        )
        + f"Machine: {r['machine']}; the clients run on the same cores as the server. Memory stays bounded: one model "
        f"per name in an LRU of EASYNET_MAX_MODELS={r['max_models']}, uploads are refused above "
        f"EASYNET_MAX_UPLOAD_MB, images above EASYNET_MAX_PIXELS. {r['note']}\n\n"
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
