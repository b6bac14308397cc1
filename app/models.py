"""The model registry: shipped checkpoints, the operator's models in <workspace>/models, and each session's own
models (fine-tuned ones, and new versions of any model) recorded in the workspace database; plus a bounded LRU of
loaded Predictors.

A model is a name; its versions share the weights of version 1 or are fine-tuned from another model (recorded as
its parent, with both validation figures). One version of each model is active: pickers, Inspect and Batch use it,
and rolling back makes an older one active. A fine-tuned model worse than its parent on the same validation data
is listed, marked, and never chosen as a category's default.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import sessions, workspace
from easynet.card import ModelCard, quality_text, read_card
from easynet.errors import InputError
from easynet.predict import AutoPredictor, Predictor
from easynet.results import headline
from easynet.store import dumps, loads

MAX_MODELS_ENV = "EASYNET_MAX_MODELS"
DEFAULT_MAX_MODELS = 8  # `auto` keeps every listed model loaded
PRECISION_ENV = "EASYNET_PRECISION"  # auto (default), fp32 or bf16: the server's inference precision
BACKEND_ENV = "EASYNET_BACKEND"  # auto (default: the fastest that agrees), optimized, eager, onnx or compiled
AUTO = "auto"  # the picker entry that lets each image choose the model it fits best (easynet.predict.AutoPredictor)
AUTO_LABEL = "auto: the model each part fits best"
log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """What a picker shows about one model (its active version)."""

    name: str  # unique across the lists (shipped names win)
    path: Path
    source: str  # "shipped", "shared" (the operator's) or "yours" (this session's)
    category: str | None = None
    preset: str | None = None
    image_size: int | None = None
    modality: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    versions: int = 1
    parent: str | None = None
    parent_metrics: dict[str, Any] | None = None
    worse: bool = False
    created: float = 0.0

    @property
    def label(self) -> str:
        facts = [self.category or "?", self.preset or "?", f"{self.image_size}px" if self.image_size else None]
        facts.append(self.quality)
        if self.parent_metrics is not None and headline(self.parent_metrics) is not None:
            facts.append(f"parent {self.parent} {headline(self.parent_metrics):.3f}")
        version = f" v{self.version}" if self.versions > 1 else ""
        worse = "; ⚠ WORSE than its parent" if self.worse else ""
        return f"{self.name}{version} ({', '.join(f for f in facts if f)}; {self.source}{worse})"

    @property
    def quality(self) -> str | None:
        """The validation I-AUROC with the number of images behind it."""
        return quality_text(self.metrics)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "category": self.category,
            "preset": self.preset,
            "image_size": self.image_size,
            "modality": self.modality,
            "validation": self.metrics,
            "parent": self.parent,
            "parent_validation": self.parent_metrics,
            "worse_than_parent": self.worse,
        }


_cards: dict[tuple[str, int, int], ModelCard | None] = {}  # None: unreadable
_cards_lock = threading.Lock()


def card(path: Path) -> ModelCard | None:
    """The card of a checkpoint file, cached per file version; None (and one log line) when it cannot be read."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _cards_lock:
        if key in _cards:
            return _cards[key]
    try:
        found = read_card(path)
    except Exception as err:  # an unreadable file is left out of the picker, not fatal
        log.warning("left out of the model list: %s", err)
        found = None
    with _cards_lock:
        _cards[key] = found
    return found


def _from_card(path: Path, source: str, found: ModelCard) -> ModelInfo:
    return ModelInfo(
        path.stem, path, source, found.category, found.preset, found.image_size, found.modality, dict(found.validation)
    )


def register(
    db: Any,
    owner: str,
    path: Path,
    category: str | None,
    parent: str | None,
    metrics: dict[str, Any],
    parent_metrics: dict[str, Any] | None,
    name: str | None = None,
    facts: dict[str, Any] | None = None,
) -> int:
    """Record a model file of ``owner`` (inside the caller's transaction ``db``): a new version of ``name`` (default:
    the file's stem), made active unless it is worse than its parent. Returns its version."""
    from easynet.results import worse_than

    name = name or path.stem
    row = db.execute("SELECT MAX(version) FROM models WHERE owner = ? AND name = ?", (owner, name)).fetchone()
    base = _base_file(name)
    version = (row[0] or (1 if base is not None and base.resolve() != Path(path).resolve() else 0)) + 1
    worse = bool(worse_than(metrics, parent_metrics))
    if not worse:
        db.execute("UPDATE models SET active = 0 WHERE owner = ? AND name = ?", (owner, name))
    body = {"validation": metrics, "parent_validation": parent_metrics, **(facts or {})}
    db.execute(
        "INSERT INTO models (name, version, owner, category, path, parent, created, worse, active, facts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, version, owner, category, str(path), Path(parent).stem if parent else None, time.time(), worse,
         not worse, dumps(body)),
    )  # fmt: skip
    return version


def _base_file(name: str) -> Path | None:
    """The shipped or operator file of a model name (its version 1), if there is one."""
    for folder in (workspace.checkpoints_dir(), workspace.root() / "models"):
        path = folder / f"{name}.pt"
        if path.is_file():
            return path
    return None


def _rows(owner: str) -> list[Any]:
    return workspace.store().query("SELECT * FROM models WHERE owner = ? ORDER BY name, version", (owner,))


def list_models(owner: str | None = None) -> list[ModelInfo]:
    """Every model this session may use, each name once with its active version: shipped first, then the operator's
    (<workspace>/models, shared by all sessions), then this session's own."""
    owner = owner or sessions.owner()
    found: dict[str, ModelInfo] = {}
    for folder, source in ((workspace.checkpoints_dir(), "shipped"), (workspace.root() / "models", "shared")):
        for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
            if path.stem not in found and not path.name.startswith("."):
                got = card(path)
                if got is not None:
                    found[path.stem] = _from_card(path, source, got)
    rows = _rows(owner) if owner != sessions.BUILD else []
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        active = next((r for r in mine if r["active"]), None)
        versions = len(mine) + (1 if name in found else 0)
        if active is None:  # version 1 (the base file) is active, or none of the session's versions
            if name in found:
                found[name].versions = versions
                continue
            active = mine[-1]
        path = Path(active["path"])
        got = card(path) if path.is_file() else None
        if got is None:
            continue
        facts = loads(active["facts"]) or {}
        info = _from_card(path, found[name].source if name in found else "yours", got)
        info.name, info.version, info.versions = name, active["version"], versions
        info.parent, info.parent_metrics = active["parent"], facts.get("parent_validation")
        info.worse, info.created = bool(active["worse"]), active["created"]
        found[name] = info
    return list(found.values())


def choices(owner: str | None = None, auto: bool = True) -> list[tuple[str, str]]:
    """(label, name) pairs for a gr.Dropdown; ``auto`` adds the entry that picks the model per image."""
    listed = [(m.label, m.name) for m in list_models(owner)]
    return ([(AUTO_LABEL, AUTO)] if auto and listed else []) + listed


def find(name: str | None, owner: str | None = None) -> ModelInfo:
    models = list_models(owner)
    if not models:
        raise InputError("no checkpoints found: add one to checkpoints/ or fine-tune one in the Fine-tune tab")
    if not name:
        return models[0]
    for m in models:
        if m.name == name or m.label == name:
            return m
    raise InputError(f"there is no model called {name!r}; choose one of {', '.join(m.name for m in models)}")


def for_category(category: str | None, owner: str | None = None) -> str | None:
    """The default model of ``category``: this session's newest model of it that is not worse than its parent, else
    the shipped or operator one."""
    if not category:
        return None
    found = [m for m in list_models(owner) if m.category == category and not m.worse]
    own = sorted((m for m in found if m.source == "yours"), key=lambda m: m.created)
    return own[-1].name if own else (found[0].name if found else None)


def versions(name: str, owner: str | None = None) -> list[dict[str, Any]]:
    """Every version of a model this session can see: the base file (v1) and the session's own, with their figures."""
    owner = owner or sessions.owner()
    rows = [r for r in _rows(owner) if r["name"] == name]
    out = []
    base = _base_file(name)
    got = card(base) if base is not None else None
    if got is not None:
        active = not any(r["active"] for r in rows)
        out.append(_version(1, active, got.validation, False, base.stat().st_mtime, base, None, {}))
    for r in rows:
        facts = loads(r["facts"]) or {}
        out.append(
            _version(r["version"], bool(r["active"]), facts.get("validation"), bool(r["worse"]), r["created"],
                     Path(r["path"]), r["parent"], facts)
        )  # fmt: skip
    if not out:
        raise InputError(f"there is no model called {name!r}")
    return out


def _version(
    version: int, active: bool, validation: Any, worse: bool, created: float, path: Path, parent: Any, facts: dict
) -> dict[str, Any]:
    keys = ("version", "active", "validation", "worse", "created", "path", "parent", "facts")
    return dict(zip(keys, (version, active, validation, worse, created, path, parent, facts)))


def activate(name: str, version: int, owner: str | None = None) -> None:
    """Make ``version`` of ``name`` the one this session uses (a rollback when it is older)."""
    owner = owner or sessions.owner()
    known = {v["version"] for v in versions(name, owner)}
    if version not in known:
        raise InputError(f"model {name} has no version {version}; it has {', '.join(map(str, sorted(known)))}")
    with workspace.store().transaction() as db:
        db.execute("UPDATE models SET active = 0 WHERE owner = ? AND name = ?", (owner, name))
        db.execute("UPDATE models SET active = 1 WHERE owner = ? AND name = ? AND version = ?", (owner, name, version))


class PredictorCache:
    """Thread-safe LRU of loaded Predictors; at most `size` models stay in memory."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or int(os.environ.get(MAX_MODELS_ENV, DEFAULT_MAX_MODELS))
        self._items: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str | None) -> Predictor | AutoPredictor:
        """The Predictor of a model's active version; ``auto`` gives an AutoPredictor over every listed model."""
        if name == AUTO:
            return AutoPredictor([self._load(m) for m in list_models()])
        return self._load(find(name))

    def _load(self, info: ModelInfo) -> Predictor:
        key = (str(info.path), info.path.stat().st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            predictor = Predictor.from_checkpoint(
                info.path,
                backend=os.environ.get(BACKEND_ENV) or "auto",
                precision=os.environ.get(PRECISION_ENV) or "auto",
                name=info.name,
                version=info.version,
            )
            if predictor.precision_note:
                log.warning("%s", predictor.precision_note)
            if predictor.backend_note:
                log.warning("%s: %s", info.name, predictor.backend_note)  # once per model load
            self._items[key] = predictor
            while len(self._items) > max(1, self.size):
                self._items.popitem(last=False)
            return predictor

    def __len__(self) -> int:
        return len(self._items)


predictors = PredictorCache()
