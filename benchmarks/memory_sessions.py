"""Server memory under many sessions: each session predicts the largest allowed image, RSS is sampled.

    python benchmarks/memory_sessions.py [--sessions 50] [--max-pixels 40000000] [--ttl 20]

Starts `app.py` in a child process on a free 127.0.0.1 port (temporary workspace, EASYNET_MAX_PIXELS and
EASYNET_STATE_TTL_S set), makes one RGB PNG + depth .npy of the largest size the limit allows, then opens
`--sessions` gradio_client sessions one after another (bounded: one /predict each, kept open) and reads the
server's VmRSS / VmHWM from /proc. Reports RSS before (after one warm-up prediction), peak, after the last
session, and after the sessions' state has expired (--ttl seconds + margin). Writes benchmarks/memory.json and
the report benchmarks/MEMORY.md. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "benchmarks" / "memory.json"
OUT_MD = REPO / "benchmarks" / "MEMORY.md"
PER_REQUEST = "## Per request"  # the section benchmarks/request_memory.py writes into the same report
EXPIRY_MARGIN_S = 10  # Gradio deletes expired state every second; a margin for the last one
SERVER_START_TIMEOUT_S = 300
SERVER = """
import os, sys
sys.path.insert(0, {repo!r})
import importlib.util
spec = importlib.util.spec_from_file_location("easynet_app_main", os.path.join({repo!r}, "app.py"))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.demo.launch(server_name="127.0.0.1", server_port={port}, quiet=True, **module.launch_settings())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def make_inputs(folder: Path, max_pixels: int) -> tuple[Path, Path, int]:
    """The largest square RGB PNG + depth .npy (a tilted table with a bump) the pixel limit allows."""
    side = int(math.isqrt(max_pixels))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([yy * 255, xx * 255, np.full_like(xx, 128)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "largest_rgb.png")
    z = 0.5 + 0.05 * yy + 0.02 * xx - 0.03 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.02)
    np.save(folder / "largest_depth.npy", z.astype(np.float32))
    return folder / "largest_rgb.png", folder / "largest_depth.npy", side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--max-pixels", type=int, default=40_000_000)
    parser.add_argument("--ttl", type=float, default=20.0, help="EASYNET_STATE_TTL_S of the server")
    parser.add_argument("--model", default="tablet")
    parser.add_argument("--note", default="", help="a sentence about the run, added to the report")
    a = parser.parse_args()
    if not 1 <= a.sessions <= 200:
        raise SystemExit("--sessions must be from 1 to 200 (a bounded run)")
    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp(prefix="easynet-memory-"))
    rgb, depth, side = make_inputs(tmp, a.max_pixels)
    port = _free_port()
    env = {
        **os.environ,
        "EASYNET_WORKSPACE": str(tmp / "workspace"),
        "EASYNET_MAX_PIXELS": str(a.max_pixels),
        "EASYNET_STATE_TTL_S": str(a.ttl),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "EASYNET_CACHE": str(tmp / "cache"),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(repo=str(REPO), port=port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    clients, samples, latencies = [], [], []
    try:
        deadline = time.time() + SERVER_START_TIMEOUT_S
        while True:
            try:
                warm = Client(url, verbose=False)
                break
            except Exception:  # not up yet
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the app did not start") from None
                time.sleep(1)
        args = (handle_file(str(rgb)), handle_file(str(depth)), a.model, "control", 1.0, "anomaly")
        warm.predict(*args, api_name="/predict")
        warm.close()
        time.sleep(a.ttl + EXPIRY_MARGIN_S)
        before, _ = _rss_mb(server.pid)
        for i in range(a.sessions):
            client = Client(url, verbose=False)
            t0 = time.perf_counter()
            client.predict(*args, api_name="/predict")
            latencies.append(time.perf_counter() - t0)
            clients.append(client)
            samples.append(round(_rss_mb(server.pid)[0], 1))
            print(f"session {i + 1}/{a.sessions}: RSS {samples[-1]:.0f} MB", flush=True)
        after_all, peak = _rss_mb(server.pid)
        time.sleep(a.ttl + EXPIRY_MARGIN_S)
        after_expiry, peak = _rss_mb(server.pid)
    finally:
        for client in clients:
            client.close()
        server.terminate()
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "sessions": a.sessions,
        "image": f"{side}x{side} RGB PNG + {side}x{side} float32 depth .npy",
        "max_pixels": a.max_pixels,
        "state_ttl_s": a.ttl,
        "model": a.model,
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_after_last_session_mb": round(after_all, 1),
        "rss_after_expiry_mb": round(after_expiry, 1),
        "rss_per_session_mb": samples,
        "predict_latency_s": {"median": round(float(np.median(latencies)), 3), "max": round(max(latencies), 3)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "note": a.note,
    }
    OUT_JSON.write_text(json.dumps(result, indent=1) + "\n")
    growth = result["rss_after_last_session_mb"] - result["rss_before_mb"]
    head = (
        "| before (after a warm-up prediction) | peak (VmHWM) | after the last session | "
        f"after expiry ({a.ttl:g} s TTL) |"
    )
    row = " | ".join(
        f"{result[k]} MB" for k in ("rss_before_mb", "rss_peak_mb", "rss_after_last_session_mb", "rss_after_expiry_mb")
    )
    kept = OUT_MD.read_text() if OUT_MD.is_file() else ""
    kept = kept[kept.index(PER_REQUEST) :] if PER_REQUEST in kept else ""  # request_memory.py's section stays
    OUT_MD.write_text(
        f"""# Memory under many sessions

`python benchmarks/memory_sessions.py --sessions {a.sessions} --max-pixels {a.max_pixels} --ttl {a.ttl:g}`
(raw numbers: `memory.json`). One app process on 127.0.0.1; {a.sessions} `gradio_client` sessions, opened one
after another and kept open, each predicting the largest image the pixel limit allows ({result["image"]},
model `{a.model}`, gate control). RSS of the server process from /proc:

{head}
|---|---|---|---|
| {row} |

Growth over {a.sessions} sessions: {growth:.1f} MB ({growth / a.sessions:.2f} MB per session). Each session keeps
only the paths of its uploads and pictures of at most 256 pixels a side (`app.ui.compact_state`), dropped
EASYNET_STATE_TTL_S after its last update (900 s by default); the peak is one prediction of the largest image
(the sessions ran one after another; how many heavy requests run at once is decided by memory admission,
app/limits.py, and measured per request below). Median /predict latency {result["predict_latency_s"]["median"]} s.
Machine: {result["machine"]}. {a.note}
"""
        + ("\n" + kept if kept else "")
    )
    print(OUT_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
