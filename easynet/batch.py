"""Batch inspection: many RGB(-D) files, folders or zips -> one verdict row per image (OK, NG or UNSURE with its
reason, easynet.prediction.Verdict), an overlay picture per image, and a report folder (report.csv, report.json,
overlays/) zipped for download.

Files are paired by name: `NAME.png|jpg|jpeg|bmp` (or `NAME_rgb.png`) with `NAME.tiff|tif|npy`, `NAME_xyz.tiff`
or `NAME_depth.png` in the same folder, or `rgb/NAME.png` with `xyz/NAME.tiff` / `depth/NAME.*` beside it (the
MVTec 3D-AD layout). `*_mask.*` and `*_gt.*` files are skipped; an image without a depth file is scored RGB-only.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from easynet.archive import Budget, extract_zip
from easynet.atomic import atomic_write_bytes
from easynet.errors import EasyNetError, InputError
from easynet.visualize import overlay, with_colour_bar, write_png

RGB_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEPTH_SUFFIXES = (".tiff", ".tif", ".npy")
NAME_TAGS = ("_rgb", "_xyz", "_depth")  # stripped from stems when pairing
SKIPPED_TAGS = ("_mask", "_gt")
LAYOUT_FOLDERS = ("rgb", "xyz", "depth")  # MVTec 3D-AD style sub-folders: pairs meet one level up
MAX_FILES = 10_000
ZIP_CONTENTS = "RGB images and depth files"
OVERLAY_MAX_SIDE = 512  # overlays in the report are at most this many pixels on their longer side
COLUMNS = (
    "name",
    "model",
    "verdict",
    "reason",
    "score",
    "threshold",
    "score_over_threshold",
    "head",
    "gate",
    "typicality",
    "rgb",
    "depth",
)
VERDICT_RGB = {"OK": (34, 139, 34), "NG": (200, 30, 30), "UNSURE": (230, 145, 0)}  # green, red, amber


@dataclass
class BatchItem:
    """One image to inspect and its depth file (None: RGB only)."""

    name: str
    rgb: Path
    depth: Path | None = None


# --- finding the pairs -------------------------------------------------------------------------------------
def _key(path: Path, loose: bool = False) -> tuple[str, str]:
    """(folder, name) that an image and its depth file share; loose files (uploaded one by one, each into its
    own temporary folder) pair by name alone."""
    stem = path.stem
    for tag in NAME_TAGS:
        if stem.endswith(tag):
            stem = stem[: -len(tag)]
            break
    folder = path.parent.parent if path.parent.name in LAYOUT_FOLDERS else path.parent
    return ("" if loose else str(folder)), stem


def pair_name(path: str | Path) -> str:
    """The name an image is known by in reports and the review queue: its stem without a pairing tag
    (``dent_00_rgb.png`` -> ``dent_00``), as a batch names its pairs."""
    return _key(Path(path), loose=True)[1]


def _is_depth(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in DEPTH_SUFFIXES or (suffix == ".png" and path.stem.endswith("_depth"))


def collect(paths: Iterable[str | Path], scratch: str | Path | None = None) -> list[BatchItem]:
    """The images to inspect among files, folders (searched recursively) and zips (unpacked under `scratch`; all the
    zips of one call share one entry and byte budget, easynet.archive.Budget)."""
    budget = Budget.default()
    files: list[Path] = []
    loose: set[Path] = set()
    for i, raw in enumerate(paths):
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.suffix.lower() == ".zip":
            if scratch is None:
                raise InputError(f"{path.name} is a zip; give a scratch folder to unpack it into")
            folder = extract_zip(
                path,
                Path(scratch) / f"zip{i:03d}_{path.stem}",
                expected=ZIP_CONTENTS,
                too_many=f"a batch takes at most {MAX_FILES} files",
                budget=budget,
            )
            files += sorted(p for p in folder.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
            loose.add(path)
        else:
            raise InputError(f"{path} is neither a file nor a folder; give images, folders or zips")
    files = [f for f in files if not f.name.startswith(".") and "__MACOSX" not in f.parts]
    if len(files) > MAX_FILES:
        raise InputError(f"{len(files)} files given; a batch takes at most {MAX_FILES}")
    depths = {_key(f, f in loose): f for f in files if _is_depth(f)}
    items, names = [], set()
    for f in files:
        if f.suffix.lower() not in RGB_SUFFIXES or _is_depth(f) or f.stem.endswith(SKIPPED_TAGS):
            continue
        name = _key(f)[1] or f.stem
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name}_{n}", n + 1
        names.add(unique)
        items.append(BatchItem(unique, f, depths.get(_key(f, f in loose))))
    if not items:
        raise InputError(
            f"no RGB image ({', '.join(RGB_SUFFIXES)}) among the {len(files)} files given; upload "
            "images, with depth files named like them (NAME.tiff, NAME_xyz.tiff, NAME_depth.png)"
        )
    return items


# --- running -----------------------------------------------------------------------------------------------
def _banner(picture: np.ndarray, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    w = picture.shape[1]
    scale = max(0.4, min(0.8, w / 700))
    band = np.zeros((int(30 * scale / 0.5), w, 3), np.uint8)
    band[:] = colour
    cv2.putText(
        band,
        text,
        (6, band.shape[0] - int(8 * scale / 0.5)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return np.concatenate([band, picture], axis=0)


def overlay_picture(image: np.ndarray, heat: np.ndarray, row: dict[str, Any]) -> np.ndarray:
    """The report's picture of one image: a verdict band, the heat map over the photo, the colour bar."""
    factor = OVERLAY_MAX_SIDE / max(image.shape[:2])
    if factor < 1:
        image = cv2.resize(
            image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA
        )
    text = f"{row['name']}  {row['verdict']}  {row['score']:.4f} / {row['threshold']:.4f}"
    return _banner(with_colour_bar(overlay(image, heat)), text, VERDICT_RGB[row["verdict"]])


def inspect_items(
    predictor: Any,
    items: list[BatchItem],
    out: str | Path,
    gate: str = "control",
    sensitivity: float = 1.0,
    admit: Callable[[BatchItem], AbstractContextManager] | None = None,
) -> Iterator[tuple[dict[str, Any], Any]]:
    """Predict each item, write its overlay to out/overlays/NAME.png, and yield (its row, its Prediction, the item) in
    order. An unreadable file gives a row with verdict "error" and the reason (and no Prediction); the batch goes on.
    ``admit(item)``, when given, is a context the item's reading and prediction run in (the app's memory budget).
    """
    from easynet.data.io import read_rgb

    for item in items:
        row: dict[str, Any] = {"name": item.name, "rgb": item.rgb.name, "depth": item.depth.name if item.depth else ""}
        try:
            with admit(item) if admit is not None else nullcontext():
                image = read_rgb(item.rgb)
                p = predictor.predict(image, item.depth, gate=gate, sensitivity=sensitivity)
        except EasyNetError as err:
            row.update({"verdict": "error", "reason": str(err), "overlay": None})
            yield row, None, item
            continue
        row.update({"model": p.model, **p.verdict.to_json()})
        target = Path(out) / "overlays" / f"{item.name}.png"
        write_png(target, overlay_picture(image, p.heatmap_original, row))
        row["overlay"] = str(target)
        yield row, p, item


def write_report(rows: list[dict[str, Any]], out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """report.csv + report.json in `out`, and `out`.zip holding them and every overlay; returns the zip."""
    out = Path(out)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "report.csv", text.getvalue().encode())
    public = [
        {k: v for k, v in r.items() if k != "overlay"} | {"overlay": _relative(r.get("overlay"), out)} for r in rows
    ]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("OK", "NG", "UNSURE", "error")}
    report = {**(meta or {}), "counts": counts, "images": public}
    atomic_write_bytes(out / "report.json", (json.dumps(report, indent=1) + "\n").encode())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("report.csv", "report.json"):
            zf.write(out / name, name)
        for r in public:
            if r["overlay"]:
                zf.write(out / r["overlay"], r["overlay"])
    return atomic_write_bytes(out.with_suffix(".zip"), buffer.getvalue())


def _relative(path: str | None, out: Path) -> str | None:
    return None if not path else Path(path).relative_to(out).as_posix()


def run_batch(
    predictor: Any,
    items: list[BatchItem],
    out: str | Path,
    gate: str = "control",
    sensitivity: float = 1.0,
    progress: Callable[[int, int], bool] | None = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Inspect every item and write the report; `progress(done, total)` returning False stops early (the report
    then covers the images done). Returns (rows, zip path)."""
    rows: list[dict[str, Any]] = []
    for row, _, _ in inspect_items(predictor, items, out, gate, sensitivity):
        rows.append(row)
        if progress is not None and progress(len(rows), len(items)) is False:
            break
    meta = {
        "model": predictor.card.name,
        "category": predictor.card.category,
        "gate": gate,
        "sensitivity": sensitivity,
        "total": len(items),
        "done": len(rows),
        "cancelled": len(rows) < len(items),
    }
    return rows, write_report(rows, out, meta)
