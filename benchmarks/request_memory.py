"""Peak memory of one Inspect request per megapixel: the figure behind the app's memory admission (app/limits.py).

    python benchmarks/request_memory.py [--sides 1000 2000 4000 6000] [--model tablet]

For each image side, with and without a depth map, a fresh Python process loads the app, warms up on the shipped
sample, then runs the Inspect handler (`app.inspect_tab.predict`: decode, plane removal, the network, pictures,
3D view) on a generated RGB PNG (+ float32 .npy depth) of that size and reads its peak RSS (VmHWM) before and after.
The growth divided by the megapixels is what app/limits.py's MB_PER_MEGAPIXEL must cover. Writes
benchmarks/request_memory.json and the "Per request" section of benchmarks/MEMORY.md. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OUT_JSON = REPO / "benchmarks" / "request_memory.json"
OUT_MD = REPO / "benchmarks" / "MEMORY.md"
BEGIN, END = "<!-- per-request:begin -->", "<!-- per-request:end -->"
CHILD = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
os.chdir({repo!r})
os.environ["EASYNET_WORKSPACE"] = {workspace!r}
os.environ["EASYNET_MEMORY_MB"] = "100000"   # measure, do not refuse
def hwm():
    f = dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines() if ":" in l)
    return int(f["VmHWM"].split()[0]) / 1024
from app import inspect_tab
sample = Path("samples") / {model!r}
rgb0 = sorted(sample.glob("*_rgb.png"))[0]
inspect_tab.predict(str(rgb0), str(rgb0).replace("_rgb.png", "_xyz.tiff"), {model!r}, "control")
path = Path({rgb!r})
depth = {depth!r}
before = hwm()
inspect_tab.predict(str(path), depth, {model!r}, "control")
print(json.dumps({{"before_mb": before, "peak_mb": hwm()}}))
"""


def make_inputs(folder: Path, side: int) -> tuple[Path, Path]:
    """An RGB PNG and a float32 z .npy (a tilted table with a bump) of side x side pixels, written by this process
    so that the measured one only reads them."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([yy * 255, xx * 255, np.full_like(xx, 128)], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "big_rgb.png")
    z = 0.5 + 0.05 * yy + 0.02 * xx - 0.03 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.02)
    np.save(folder / "big_depth.npy", z.astype(np.float32))
    return folder / "big_rgb.png", folder / "big_depth.npy"


def measure(side: int, with_depth: bool, model: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="easynet-mem-") as tmp:
        rgb, depth = make_inputs(Path(tmp), side)
        code = CHILD.format(
            repo=str(REPO), workspace=tmp, model=model, rgb=str(rgb), depth=str(depth) if with_depth else None
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    mp = side * side / 1e6
    growth = row["peak_mb"] - row["before_mb"]
    return {"side": side, "megapixels": round(mp, 2), "depth": with_depth, "before_mb": round(row["before_mb"], 1),
            "peak_mb": round(row["peak_mb"], 1), "growth_mb": round(growth, 1),
            "mb_per_megapixel": round(growth / mp, 1)}  # fmt: skip


def write(rows: list[dict], model: str) -> None:
    sys.path.insert(0, str(REPO))
    from app.limits import DEFAULT_MEMORY_MB, MB_BASE, MB_PER_MEGAPIXEL

    lines = [
        "| side | megapixels | depth | RSS before | peak | growth | MB per megapixel | admitted as | within |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        admitted = MB_BASE + MB_PER_MEGAPIXEL * r["megapixels"] * (2 if r["depth"] else 1)  # app.limits.estimate_mb
        lines.append(
            f"| {r['side']} | {r['megapixels']} | {'xyz .npy' if r['depth'] else 'none'} | {r['before_mb']} MB | "
            f"{r['peak_mb']} MB | {r['growth_mb']} MB | {r['mb_per_megapixel']} | {admitted:.0f} MB | "
            f"{'yes' if r['growth_mb'] <= admitted else '**no**'} |"
        )
    machine = f"{platform.machine()}, {platform.processor() or 'CPU'}, Python {platform.python_version()}"
    block = (
        f"{BEGIN}\n`python benchmarks/request_memory.py` (raw: `request_memory.json`): one Inspect request (model "
        f"`{model}`, gate control) on a generated RGB PNG, with and without a float32 depth map of the same size, "
        "each in a fresh process (which only reads the files) after a warm-up on the shipped sample; growth of the "
        f"peak RSS ({machine}).\n\n"
        + "\n".join(lines)
        + f"\n\nThe app admits a request by {MB_BASE} MB plus {MB_PER_MEGAPIXEL} MB per megapixel of the RGB image "
        "and again of the depth map (`app/limits.py`, the *admitted as* column), estimated from the files' headers; "
        f"EASYNET_MEMORY_MB ({DEFAULT_MEMORY_MB}) bounds what the admitted requests may use together.\n{END}"
    )
    text = OUT_MD.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Per request\n\n" + block + "\n"
    from easynet.atomic import atomic_write_text

    atomic_write_text(OUT_MD, text)
    atomic_write_text(OUT_JSON, json.dumps({"model": model, "rows": rows}, indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[1000, 2000, 4000, 6000])
    parser.add_argument("--model", default="tablet")
    a = parser.parse_args()
    if any(not 64 <= s <= 6324 for s in a.sides):
        raise SystemExit("--sides must be from 64 to 6324 pixels (the default pixel limit)")
    rows = []
    for side in a.sides:
        for with_depth in (False, True):
            rows.append(measure(side, with_depth, a.model))
            print(json.dumps(rows[-1]), flush=True)
    write(rows, a.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
