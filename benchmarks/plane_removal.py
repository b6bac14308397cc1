"""Times plane removal (RANSAC table fit + largest component) on one generated 800x800 organised point cloud,
and measures the foreground on scans with missing points across the object (a 1-px seam, a specular hole + a
band, 20 % random dropouts): the fraction of the object's measured points kept and of the table taken.

Run from the repository root: `python benchmarks/plane_removal.py`; writes benchmarks/plane_removal.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SIZE = 800
REPEATS = 5
OUTPUT = Path(__file__).with_name("plane_removal.json")


def main() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from helpers import GAP_KINDS, make_scene_xyz, with_gaps

    from easynet.atomic import atomic_write_text
    from easynet.data.geometry import _import_open3d, depth_input, prepare_depth, remove_table
    from easynet.data.types import DepthMap

    xyz, truth = make_scene_xyz(SIZE, tilt=10.0, missing_fraction=0.05, noise=0.0003, seed=0)
    depth = DepthMap(z=xyz[..., 2].copy(), xyz=xyz)
    start = time.perf_counter()
    _import_open3d()
    import_s = time.perf_counter() - start
    timings, pseudo_timings, prepare_timings = [], [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        geometry = remove_table(depth)
        depth_input(geometry)
        timings.append(time.perf_counter() - start)
        start = time.perf_counter()
        remove_table(DepthMap(z=depth.z))
        pseudo_timings.append(time.perf_counter() - start)
        start = time.perf_counter()
        prepare_depth(depth, 256)
        prepare_timings.append(time.perf_counter() - start)
    iou = float((geometry.foreground & truth).sum() / (geometry.foreground | truth).sum())
    clean, object_height = make_scene_xyz(SIZE, tilt=10.0, missing_fraction=0.0, noise=0.0003, seed=1)
    gaps = {}
    for kind in GAP_KINDS:
        scan = with_gaps(clean, kind, seed=1)
        measured = scan[..., 2] > 0
        obj, table = object_height & measured, measured & ~object_height
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            foreground = remove_table(DepthMap(z=scan[..., 2].copy(), xyz=scan)).foreground
            times.append(time.perf_counter() - start)
        gaps[kind] = {
            "object_kept": round(float((foreground & obj).sum() / obj.sum()), 4),
            "table_taken": round(float((foreground & table).sum() / table.sum()), 5),
            "remove_table_median_s": round(float(np.median(times)), 4),
        }
    result = {
        "image": f"{SIZE}x{SIZE} xyz, tilted table (10 deg) + box + blob, noise 0.3 mm, 5 % missing",
        "open3d_import_s": round(import_s, 3),
        "remove_table_xyz_median_s": round(float(np.median(timings)), 4),
        "remove_table_z_only_median_s": round(float(np.median(pseudo_timings)), 4),
        "prepare_depth_256_median_s": round(float(np.median(prepare_timings)), 4),
        "foreground_iou": round(iou, 4),
        "missing_points": gaps,
        "target": "object_kept >= 0.98 and table_taken <= 0.01 on every kind of missing points",
        "repeats": REPEATS,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    atomic_write_text(OUTPUT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
