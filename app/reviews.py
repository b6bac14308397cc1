"""The review loop's state: every inspected image waits in its session's review queue with its model verdict; a
person confirms or overrides it; the decision joins the annotated set (the MVTec 3D-AD layout Annotate writes) and
the append-only audit trail; the judged images of a model give its operating point, saved as a new version.

Everything lives in the workspace database (easynet.store: tables ``reviews`` and ``audit``) and the session's
folder (``reviews/``: a copy of each image by content hash, its heat picture and the model's mask).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from app import models, sessions, workspace
from easynet.batch import pair_name
from easynet.data.io import read_mask
from easynet.errors import InputError
from easynet.operating import confusion, cutoff_for_false_reject, cutoff_for_miss
from easynet.visualize import write_png

PAGE = 20  # queue rows per page
VALIDATION_EVERY = 5  # every fifth image judged OK goes to validation/good, the others to train/good
HUMAN = ("OK", "NG")
DEFAULT_CATEGORY = "reviewed"  # the annotated category of images judged on a model without one


def _hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def priority(verdict: str, ratio: float) -> float:
    """Queue order: NG and UNSURE first (0), then the images nearest the threshold (1 + |ratio - 1|)."""
    return 0.0 if verdict in ("NG", "UNSURE") else 1.0 + abs(ratio - 1.0)


def record(
    p: Any, rgb: str | Path, depth: str | Path | None, picture: np.ndarray, batch: str | None = None, name: str = ""
) -> int:
    """Put an inspected image in its session's queue (a copy of its files, its heat picture, the model's mask);
    returns the review id that API callers use to post the human verdict."""
    owner = sessions.owner()
    folder = workspace.own("reviews")
    digest = _hash(rgb)
    image = folder / f"{digest}{Path(rgb).suffix.lower()}"
    if not image.is_file():
        shutil.copyfile(rgb, image)
    depth_copy = None
    if depth:
        depth_copy = folder / f"{_hash(depth)}{Path(depth).suffix.lower()}"
        if not depth_copy.is_file():
            shutil.copyfile(depth, depth_copy)
    stamp = f"{digest}-{time.monotonic_ns() % 10**9:09d}"
    picture_path = write_png(folder / f"{stamp}-heat.png", picture)  # at most the display size (the caller's)
    mask_path = write_png(folder / f"{stamp}-mask.png", (p.on_original(p.anomaly_map) >= p.threshold) * np.uint8(255))
    v = p.verdict
    row = {
        "owner": owner,
        "batch": batch,
        "image_hash": digest,
        "image": str(image),
        "depth": str(depth_copy) if depth_copy else None,
        "name": name or pair_name(rgb),
        "model": p.model,
        "version": getattr(p, "version", None),
        "category": p.category,
        "gate": p.gate,
        "head": p.used,
        "score": float(p.score),
        "threshold": float(p.threshold),
        "head_threshold": float(p.head_threshold),
        "model_verdict": v.label,
        "reason": v.reason,
        "picture": str(picture_path),
        "mask": str(mask_path),
        "priority": priority(v.label, v.ratio),
        "created": time.time(),
    }
    with workspace.store().transaction() as db:
        cur = db.execute(
            f"INSERT INTO reviews ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
        return int(cur.lastrowid)


def queue(page: int = 0, owner: str | None = None, size: int = PAGE) -> list[dict[str, Any]]:
    """One page of this session's undecided images: NG and UNSURE first, then the nearest the threshold."""
    rows = workspace.store().query(
        "SELECT id, name, model, model_verdict, score, threshold, reason, batch FROM reviews "
        "WHERE owner = ? AND human_verdict IS NULL ORDER BY priority, id LIMIT ? OFFSET ?",
        (owner or sessions.owner(), size, max(0, int(page)) * size),
    )
    return [dict(r) for r in rows]


def waiting(owner: str | None = None) -> int:
    row = workspace.store().query(
        "SELECT COUNT(*) FROM reviews WHERE owner = ? AND human_verdict IS NULL", (owner or sessions.owner(),)
    )
    return int(row[0][0])


def item(review_id: int | str, owner: str | None = None) -> dict[str, Any]:
    """One review of this session (another session's is reported as not existing)."""
    try:
        number = int(review_id)
    except (TypeError, ValueError):
        raise InputError(f"{review_id!r} is not a review id; expected the number /predict returned") from None
    rows = workspace.store().query(
        "SELECT * FROM reviews WHERE id = ? AND owner = ?", (number, owner or sessions.owner())
    )
    if not rows:
        raise InputError(f"there is no review {number} in this session")
    return dict(rows[0])


def who() -> str:
    """The person deciding: the login name when the server has logins, else the session."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return getattr(request, "username", None) or sessions.owner()


def decide(
    review_id: int | str, verdict: str, defect: str | None = None, mask: np.ndarray | None = None
) -> dict[str, Any]:
    """A person's verdict on one review: the image joins the annotated set (OK -> train or validation good, NG ->
    test/<defect> with the mask, the model's own when none is given), the decision joins the audit trail, and the
    review leaves the queue. Deciding again appends a new audit row and moves the image (relabelling)."""
    if verdict not in HUMAN:
        raise InputError(f"the verdict must be OK or NG, got {verdict!r}")
    row = item(review_id)
    category = row["category"] or DEFAULT_CATEGORY
    defect = (defect or "").strip() or ("defect" if verdict == "NG" else None)
    if verdict == "NG" and mask is None:
        mask = read_mask(row["mask"]) > 0
        if not mask.any():  # the model saw nothing: the whole image is marked, the person may correct it
            mask = np.ones_like(mask)
    split = "train"
    if verdict == "OK":
        ok = [e for e in workspace.list_annotations(category) if "/good/" in e]
        split = "validation" if len(ok) % VALIDATION_EVERY == VALIDATION_EVERY - 1 else "train"
    replace = row["entry"].split(":", 1)[1] if row["entry"] else None
    entry = workspace.save_annotation(
        category, verdict, row["image"], row["depth"], mask, defect, split, replace=replace
    )
    files = workspace.entry_files(category, entry)
    decided = time.time()
    store = workspace.store()
    with store.transaction() as db:
        db.execute(
            "UPDATE reviews SET human_verdict = ?, decided = ?, entry = ? WHERE id = ?",
            (verdict, decided, f"{category}:{entry}", row["id"]),
        )
    audit_id = store.audit(
        {
            "review": row["id"],
            "image_hash": row["image_hash"],
            "image": row["name"],
            "model": row["model"],
            "version": row["version"],
            "gate": row["gate"],
            "score": row["score"],
            "threshold": row["threshold"],
            "model_verdict": row["model_verdict"],
            "human_verdict": verdict,
            "mask": files["gt"].relative_to(workspace.annotations_root()).as_posix() if files["gt"] else None,
            "defect": defect if verdict == "NG" else None,
            "who": who(),
            "at": decided,
            "batch": row["batch"],
        }
    )
    return {"review": row["id"], "audit": audit_id, "entry": f"{category}:{entry}", "human_verdict": verdict}


def batch_report(batch: str, owner: str | None = None) -> dict[str, Any]:
    """Model verdicts against human verdicts for one batch: counts, misses (model OK, person NG) and false
    rejects (model NG, person OK)."""
    rows = workspace.store().query(
        "SELECT model_verdict, human_verdict FROM reviews WHERE owner = ? AND batch = ?",
        (owner or sessions.owner(), batch),
    )
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r['model_verdict']} -> {r['human_verdict'] or 'not yet judged'}"
        counts[key] = counts.get(key, 0) + 1
    judged = [r for r in rows if r["human_verdict"]]
    return {
        "batch": batch,
        "images": len(rows),
        "judged": len(judged),
        "misses": sum(r["model_verdict"] == "OK" and r["human_verdict"] == "NG" for r in judged),
        "false_rejects": sum(r["model_verdict"] == "NG" and r["human_verdict"] == "OK" for r in judged),
        "unsure": sum(r["model_verdict"] == "UNSURE" for r in judged),
        "model_vs_human": counts,
    }


def batches(owner: str | None = None) -> list[str]:
    rows = workspace.store().query(
        "SELECT DISTINCT batch FROM reviews WHERE owner = ? AND batch IS NOT NULL ORDER BY batch DESC",
        (owner or sessions.owner(),),
    )
    return [r["batch"] for r in rows]


def judged(model: str, owner: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ratios, labels) of this session's judged images of ``model``: each score over the threshold of the head that
    judged it in the model's active version (versions of a name share their weights, so scores compare)."""
    info = models.find(model, owner)
    predictor = models.predictors.get(info.name)
    rows = workspace.store().query(
        "SELECT head, score, human_verdict FROM reviews WHERE owner = ? AND model = ? AND human_verdict IS NOT NULL",
        (owner or sessions.owner(), info.name),
    )
    heads = {"rgb": predictor.calibration.rgb.threshold, "fused": predictor.calibration.fused.threshold}
    ratios = np.array([r["score"] / heads[r["head"]] for r in rows], float)
    return ratios, np.array([int(r["human_verdict"] == "NG") for r in rows], int)


def cutoff(model: str, target: str, share: float) -> float:
    """The cut-off (on the active version's ratio scale) for a target: "miss" or "false reject"."""
    ratios, labels = judged(model)
    if target == "miss":
        return cutoff_for_miss(ratios, labels, share)
    return cutoff_for_false_reject(ratios, labels, share)


def save_version(model: str, cut: float, target: dict[str, Any]) -> int:
    """A new version of ``model`` with its thresholds multiplied by ``cut`` (weights untouched), active at once, its
    provenance the parent version, the labels and the target. Returns the version number."""
    from easynet.pipeline import write_cutoff

    owner = sessions.owner()
    info = models.find(model)
    ratios, labels = judged(model)
    counts = confusion(ratios, labels, cut)
    record = {
        "parent": f"{info.name} v{info.version}",
        "labels": {"ok": int((labels == 0).sum()), "ng": int((labels == 1).sum()), "source": "review queue"},
        "target": target,
        "counts": counts.__dict__,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = workspace.own("models") / f"{info.name}.{stamp}.pt"
    write_cutoff(info.path, out, cut, record)
    with workspace.store().transaction() as db:
        version = models.register(
            db, owner, out, info.category, info.name, info.metrics, None, name=info.name, facts={"operating": record}
        )
    return version
