"""The app's workspace folder: annotated data set (MVTec 3D-AD layout), fine-tuned models, jobs, uploads.

Everything the app writes lives under EASYNET_WORKSPACE (default ./workspace, git-ignored). Each session
(app/sessions.py) has its own annotations, uploads, exports and fine-tuned models under
sessions/<owner>/; the workspace root holds what all share (models/ placed by the operator, jobs/, synthetic/)
and is the folder of the LOCAL owner (the CLI, scripts).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from app import sessions
from app.state import DEFAULT_WORKSPACE, WORKSPACE_ENV, root  # noqa: F401 - the workspace's names, here too
from app.state import store as _database
from easynet import archive
from easynet.atomic import atomic_write_bytes
from easynet.data.io import check_same_size, read_rgb
from easynet.errors import InputError
from easynet.inputs import read_xyz
from easynet.pipeline import synthetic_dataset
from easynet.store import Store, dumps
from easynet.visualize import write_png

log = logging.getLogger(__name__)
SESSIONS = "sessions"
SESSION_TTL_ENV = "EASYNET_SESSION_TTL_HOURS"
SESSION_TTL_HOURS = 72.0  # a session folder untouched this long is deleted (its jobs must have ended)
MIN_TRAIN_IMAGES = 2  # good images a fine-tuning zip must hold under CATEGORY/train/good/rgb
MIN_VALIDATION_IMAGES = 1  # and under CATEGORY/validation/good/rgb (calibration needs them)
LAYOUT = "CATEGORY/train/good/rgb/NNN.png + xyz/NNN.tiff, CATEGORY/validation/good/..."
ASSETS_ENV = "EASYNET_ASSETS"  # the folder holding the shipped samples/ and checkpoints/
SOURCE_TREE = Path(__file__).resolve().parents[1]  # the checkout, when the app runs from one
OK_SPLITS = ("train", "validation", "test")  # where an OK image may go; NG always goes to test/<defect>
GOOD = "good"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SAMPLE_PATTERN = re.compile(r"^(?P<kind>[a-z]+)_(?P<index>\d+)_rgb\.png$")


def store(folder: Path | None = None) -> Store:
    """The workspace's database (easynet.store): sessions, jobs, models, annotations, reviews, audit trail (of
    ``folder``, default the workspace). A workspace of the earlier layout (JSON job files, unindexed folders) is
    imported on first use."""
    db = _database(folder)
    if db.path not in _imported:
        import_legacy(db, db.path.parent)
        _imported.add(db.path)
    return db


_imported: set[Path] = set()  # databases whose legacy import was done (or found done) by this process


LEGACY_KEY = "legacy_layout_imported"


def import_legacy(db: Store, folder: Path) -> None:
    """Index what an earlier version left as loose files: jobs/<id>.json, sessions/<owner>/annotations/... and
    sessions/<owner>/models/*.pt (once per workspace; the files stay where they are)."""
    if db.setting(LEGACY_KEY):
        return
    with db.transaction() as conn:
        for path in sorted((folder / "jobs").glob("*.json")):
            try:
                data = json.loads(path.read_text())
                row = (data["id"], data.get("owner", sessions.LOCAL), None, secrets.token_hex(16), data["state"],
                       float(data.get("created", 0)), data.get("finished"), json.dumps(data))  # fmt: skip
            except (ValueError, KeyError, TypeError, OSError):
                continue
            conn.execute(
                "INSERT OR IGNORE INTO jobs (id, owner, client, token, state, created, finished, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        owners = [(sessions.LOCAL, folder)] + [(p.name, p) for p in sorted((folder / SESSIONS).glob("*")) if p.is_dir()]
        for owner, base in owners:
            for rgb in sorted((base / "annotations").glob("*/*/*/rgb/*.png")):
                category, split, defect = rgb.parts[-5], rgb.parts[-4], rgb.parts[-3]
                files = {
                    k: str(v.relative_to(base / "annotations")) for k, v in _files(rgb.parents[1], rgb.stem).items()
                }
                conn.execute(
                    "INSERT OR IGNORE INTO annotations (owner, category, entry, split, defect, files, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (owner, category, f"{split}/{defect}/{rgb.stem}", split, defect, dumps(files), rgb.stat().st_mtime),
                )
            if owner == sessions.LOCAL:
                continue  # <workspace>/models is the operator's shared folder, listed from disk
            for path in sorted((base / "models").glob("*.pt")):
                conn.execute(
                    "INSERT OR IGNORE INTO models (name, version, owner, category, path, parent, created, active, "
                    "facts) VALUES (?, 1, ?, ?, ?, NULL, ?, 1, '{}')",
                    (path.stem, owner, path.stem.split("_ft_")[0], str(path), path.stat().st_mtime),
                )
        conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (LEGACY_KEY, "1"))


def assets_root() -> Path:
    """Where the shipped samples/ and checkpoints/ are: EASYNET_ASSETS, else the working directory when it holds
    either folder, else the source tree (an installed package has none there, so the setting or cwd decides)."""
    value = os.environ.get(ASSETS_ENV)
    if value:
        return Path(value).resolve()
    cwd = Path.cwd().resolve()
    if (cwd / "samples").is_dir() or (cwd / "checkpoints").is_dir():
        return cwd
    return SOURCE_TREE


def samples_dir() -> Path:
    return assets_root() / "samples"


def checkpoints_dir() -> Path:
    return assets_root() / "checkpoints"


def sub(name: str) -> Path:
    """A shared folder of the workspace root (jobs, synthetic data, operator models)."""
    path = root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def folder(owner: str) -> Path:
    """The folder of one owner: the workspace root for LOCAL, sessions/<owner> for everyone else."""
    return root() if owner == sessions.LOCAL else root() / SESSIONS / owner


def own(name: str, owner: str | None = None) -> Path:
    """A folder of the current session (annotations, uploads, exports, models), created on first use."""
    path = folder(owner or sessions.owner()) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def session_ttl_s() -> float:
    value = os.environ.get(SESSION_TTL_ENV)
    try:
        return float(value) * 3600 if value else SESSION_TTL_HOURS * 3600
    except ValueError:
        raise InputError(f"{SESSION_TTL_ENV} must be a number of hours, got {value!r}") from None


def _newest(path: Path) -> float:
    """The newest modification time under ``path`` (files vanishing during the walk are skipped)."""
    newest = 0.0
    for item in [path, *path.rglob("*")]:
        try:
            newest = max(newest, item.stat().st_mtime)
        except OSError:  # deleted while we looked: another sweep, a finished job
            continue
    return newest


def sweep_sessions(busy: set[str], max_age_s: float | None = None, now: float | None = None) -> list[str]:
    """Delete the folders of sessions untouched for max_age_s (default EASYNET_SESSION_TTL_HOURS), except the
    owners in `busy` (active or resumable jobs) and TEAM, with their rows in the database (the audit trail stays);
    returns the owners removed. Files vanishing during the sweep are skipped, never an error."""
    base = root() / SESSIONS
    max_age_s = session_ttl_s() if max_age_s is None else max_age_s
    now = time.time() if now is None else now
    removed = []
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        if not path.is_dir() or path.name in busy or path.name == sessions.TEAM:
            continue
        if now - _newest(path) > max_age_s:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    if removed:
        marks = ", ".join("?" * len(removed))
        with store().transaction() as db:
            for table in ("annotations", "models", "reviews", "sessions"):
                db.execute(f"DELETE FROM {table} WHERE owner IN ({marks})", removed)
            db.execute(f"DELETE FROM jobs WHERE owner IN ({marks}) AND state NOT IN ('queued', 'running')", removed)
    return removed


SWEEP_EVERY_S = 600.0


class Sweeper:
    """Sweeps old session folders on a timer (a daemon thread), not only when a fine-tuning job ends."""

    def __init__(self, busy: Any, every_s: float = SWEEP_EVERY_S) -> None:
        self.busy, self.every_s = busy, every_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="easynet-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                sweep_sessions(self.busy())
            except Exception:  # the next tick tries again; the server goes on
                log.warning("sweeping old session folders failed", exc_info=True)


def safe_name(name: str | None, what: str) -> str:
    """A category or defect name usable as one folder name; refuses separators and '..' with a sentence."""
    name = (name or "").strip()
    if not name:
        raise InputError(f"the {what} name is empty; type a name such as 'scratch'")
    if len(name) > 64:
        raise InputError(f"the {what} name is {len(name)} characters long; 64 at most")
    if "/" in name or "\\" in name or ".." in name:
        raise InputError(f"the {what} name {name!r} must not contain path separators or '..'")
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"the {what} name {name!r} may only use letters, digits, '_', '-' and '.', starting with a letter or digit"
        )
    return name


# --- server folders ---------------------------------------------------------------------------------------
DATA_ROOTS_ENV = "EASYNET_DATA_ROOTS"


def allowed_folder(folder: str | None) -> Path:
    """A server folder the Compare tab may read: under one of EASYNET_DATA_ROOTS (os.pathsep-separated).

    Unset or empty: none, on every server; the operator opens roots explicitly.
    """
    if not folder or not folder.strip():
        raise InputError("give the data set root, a folder on the server")
    path = Path(folder.strip()).expanduser().resolve()
    roots = os.environ.get(DATA_ROOTS_ENV, "")
    allowed = [Path(r).expanduser().resolve() for r in roots.split(os.pathsep) if r.strip()]
    if not any(path == r or r in path.parents for r in allowed):
        if not allowed:
            raise InputError(
                f"reading server folders is switched off on this server; the operator opens data set "
                f"roots with {DATA_ROOTS_ENV}"
            )
        raise InputError(
            f"reading {folder!r} is not allowed on this server; the allowed data set roots are set with "
            f"{DATA_ROOTS_ENV}"
        )
    if not path.is_dir():
        raise InputError(f"{folder!r} is not a folder on the server; give the data set root")
    return path


# --- samples ---------------------------------------------------------------------------------------------
def sample_pairs(folder: Path | None = None) -> list[tuple[str, str | None]]:
    """(rgb, xyz or None) for every samples/<category>/<kind>_<NN>_rgb.png, sorted."""
    folder = samples_dir() if folder is None else folder
    pairs = []
    for rgb in sorted(folder.glob("*/*_rgb.png")) if folder.is_dir() else []:
        if SAMPLE_PATTERN.match(rgb.name):
            xyz = rgb.with_name(rgb.name.replace("_rgb.png", "_xyz.tiff"))
            pairs.append((str(rgb), str(xyz) if xyz.is_file() else None))
    return pairs


# --- annotated data set ------------------------------------------------------------------------------------
def annotations_root() -> Path:
    """The current session's annotated data set."""
    return own("annotations")


def annotated_categories() -> list[str]:
    """The current session's annotated categories (the index in the workspace database)."""
    rows = store().query("SELECT DISTINCT category FROM annotations WHERE owner = ? ORDER BY category", (_owner(),))
    return [r["category"] for r in rows]


def _owner() -> str:
    return sessions.owner()


def _entry_folder(category: str, entry: str) -> tuple[Path, str]:
    """'split/defect/NNN' -> (folder of split/defect, NNN), validated."""
    parts = (entry or "").split("/")
    if len(parts) != 3 or parts[0] not in OK_SPLITS or not parts[2].isdigit():
        raise InputError(f"{entry!r} is not an annotation entry; expected split/defect/NNN")
    return annotations_root() / safe_name(category, "category") / parts[0] / safe_name(parts[1], "defect"), parts[2]


def _files(folder: Path, stem: str) -> dict[str, Path]:
    return {
        "rgb": folder / "rgb" / f"{stem}.png",
        "xyz": folder / "xyz" / f"{stem}.tiff",
        "gt": folder / "gt" / f"{stem}.png",
    }


def entry_files(category: str, entry: str) -> dict[str, Path | None]:
    folder, stem = _entry_folder(category, entry)
    files = _files(folder, stem)
    row = store().query(
        "SELECT 1 FROM annotations WHERE owner = ? AND category = ? AND entry = ?", (_owner(), category, entry)
    )
    if not row or not files["rgb"].is_file():
        raise InputError(f"annotation {category}/{entry} does not exist (deleted?)")
    return {k: (p if p.is_file() else None) for k, p in files.items()}


def list_annotations(category: str | None = None) -> list[str]:
    """'category:split/defect/NNN' for every saved entry of this session (or the entries of one category)."""
    sql, args = "SELECT category, entry FROM annotations WHERE owner = ?", [_owner()]
    if category:
        sql, args = sql + " AND category = ?", [*args, safe_name(category, "category")]
    return [f"{r['category']}:{r['entry']}" for r in store().query(sql + " ORDER BY category, entry", args)]


def check_annotated_for_training(category: str) -> None:
    """Refuses, before a job is queued, an annotated category with too few good images to fine-tune on."""
    rows = store().query(
        "SELECT split, COUNT(*) AS n FROM annotations WHERE owner = ? AND category = ? AND defect = ? GROUP BY split",
        (_owner(), category, GOOD),
    )
    counts = {r["split"]: r["n"] for r in rows}
    n_train, n_val = counts.get("train", 0), counts.get("validation", 0)
    if n_train < MIN_TRAIN_IMAGES or n_val < MIN_VALIDATION_IMAGES:
        what = "has no annotated images" if not rows else f"holds {n_train} good training and {n_val} validation images"
        raise InputError(
            f"the annotated category {category!r} {what}; fine-tuning needs at least {MIN_TRAIN_IMAGES} OK images "
            f"saved to train and {MIN_VALIDATION_IMAGES} to validation"
        )


def save_annotation(
    category: str,
    label: str,
    rgb: str | Path,
    depth: str | Path | None,
    mask: np.ndarray | None,
    defect: str | None = None,
    ok_split: str = "train",
    replace: str | None = None,
) -> str:
    """Write one labelled image into the workspace data set and its index; returns its entry id 'split/defect/NNN'.

    OK -> <ok_split>/good (gt of zeros under test), NG -> test/<defect> with gt 0/255. ``replace`` (an entry id)
    is deleted after the new files are written, which is how relabelling works. The entry number is taken in the
    database's write transaction, so two saves at once never share one.
    """
    category = safe_name(category, "category")
    if label not in ("OK", "NG"):
        raise InputError(f"the label must be OK or NG, got {label!r}")
    if label == "OK" and ok_split not in OK_SPLITS:
        raise InputError(f"an OK image goes to one of {', '.join(OK_SPLITS)}, got {ok_split!r}")
    split, kind = ("test", safe_name(defect, "defect type")) if label == "NG" else (ok_split, GOOD)
    if kind == GOOD and label == "NG":
        raise InputError("a defect type cannot be called 'good'; name the defect, e.g. 'scratch'")
    image = read_rgb(rgb)
    xyz = read_xyz(depth) if depth else None
    if xyz is not None:
        check_same_size(image, xyz)
    gt = np.zeros(image.shape[:2], np.uint8)
    if label == "NG":
        if mask is None or not np.any(mask):
            raise InputError("an NG image needs a painted defect region; paint it over the image")
        if mask.shape != gt.shape:
            raise InputError(
                f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{gt.shape[1]}x{gt.shape[0]}; paint on the image shown in the editor"
            )
        gt = np.where(mask, 255, 0).astype(np.uint8)
    folder, owner = annotations_root() / category / split / kind, _owner()
    with store().transaction() as db:  # take the next number: files on disk and entries indexed
        taken = {int(p.stem) for p in (folder / "rgb").glob("*.png") if p.stem.isdigit()}
        prefix = f"{split}/{kind}/"
        rows = db.execute(
            "SELECT entry FROM annotations WHERE owner = ? AND category = ? AND entry LIKE ?",
            (owner, category, prefix + "%"),
        ).fetchall()
        taken |= {int(r["entry"].rsplit("/", 1)[1]) for r in rows}
        stem = f"{max(taken, default=-1) + 1:03d}"
        entry = prefix + stem
        files = {k: str(v.relative_to(annotations_root())) for k, v in _files(folder, stem).items()}
        db.execute(
            "INSERT INTO annotations (owner, category, entry, split, defect, files, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (owner, category, entry, split, kind, dumps(files), time.time()),
        )
    try:
        if xyz is not None:
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, xyz, photometric="rgb")
            atomic_write_bytes(folder / "xyz" / f"{stem}.tiff", buffer.getvalue())
        if split == "test":
            write_png(folder / "gt" / f"{stem}.png", gt)
        write_png(folder / "rgb" / f"{stem}.png", image)  # last: an entry's files are complete once its rgb exists
    except BaseException:
        _unindex(category, entry)
        for path in _files(folder, stem).values():
            path.unlink(missing_ok=True)
        raise
    if replace and replace != entry:
        delete_annotation(category, replace)
    return entry


def _unindex(category: str, entry: str) -> None:
    with store().transaction() as db:
        db.execute(
            "DELETE FROM annotations WHERE owner = ? AND category = ? AND entry = ?", (_owner(), category, entry)
        )


def delete_annotation(category: str, entry: str) -> None:
    for path in entry_files(category, entry).values():
        if path is not None:
            path.unlink(missing_ok=True)
    _unindex(category, entry)


def zip_annotations() -> Path:
    """The whole annotated data set as one zip (written atomically) for download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(annotations_root().rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                zf.write(path, path.relative_to(annotations_root()).as_posix())
    return atomic_write_bytes(own("exports") / "annotations.zip", buffer.getvalue())


# --- uploaded data set zips -----------------------------------------------------------------------------
def upload_folder(data_root: str | Path) -> Path | None:
    """The extraction folder (under the session's uploads/) holding a data root from extract_dataset_zip."""
    data_root = Path(data_root).resolve()
    for base in (root() / "uploads", *(root() / SESSIONS).glob("*/uploads")):
        if base in data_root.parents:
            return base / data_root.relative_to(base).parts[0]
    return None


def extract_dataset_zip(path: str | Path) -> tuple[Path, str]:
    """Safely extract an uploaded MVTec 3D-AD zip (easynet.archive.extract_zip); returns (data root, category).

    Besides the archive's own refusals, a layout without one CATEGORY/train/good/rgb folder or with too few good
    images is refused before anything is written.
    """
    found: list[Path] = []

    def check_layout(names: list[str]) -> None:
        found.append(_zip_category(Path(path).name, names))

    out = own("uploads") / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    archive.extract_zip(
        path, out, expected=f"one category ({LAYOUT})", too_many="zip one category of images", check_names=check_layout
    )
    return out / found[0].parent, found[0].name


def _zip_category(zip_name: str, names: list[str]) -> Path:
    """The one CATEGORY folder (with any leading folders) of a zip's member names, checked for enough images."""

    def images(split: str) -> dict[Path, int]:
        found: dict[Path, int] = {}
        for name in names:
            if re.search(rf"(^|/){split}/good/rgb/[^/]+\.png$", name):
                found[Path(name).parents[3]] = found.get(Path(name).parents[3], 0) + 1
        return found

    train = images("train")
    if len(train) != 1 or next(iter(train)) == Path("."):
        raise InputError(
            f"{zip_name} is not in the MVTec 3D-AD layout: expected exactly one CATEGORY folder ({LAYOUT})"
        )
    category = next(iter(train))
    safe_name(category.name, "category")
    n_train, n_val = train[category], images("validation").get(category, 0)
    if n_train < MIN_TRAIN_IMAGES or n_val < MIN_VALIDATION_IMAGES:
        raise InputError(
            f"{zip_name} holds {n_train} good training and {n_val} validation images; fine-tuning "
            f"needs at least {MIN_TRAIN_IMAGES} in {category.name}/train/good/rgb and "
            f"{MIN_VALIDATION_IMAGES} in {category.name}/validation/good/rgb"
        )
    return category


# --- synthetic data generated on demand --------------------------------------------------------------------
def ensure_synthetic(category: str) -> Path:
    """The shipped synthetic category, generated once into <workspace>/synthetic."""
    return synthetic_dataset(sub("synthetic"), category)
