"""Model registry: shipped checkpoints and fine-tuned ones in the workspace, plus a bounded LRU of Predictors."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import sessions, workspace
from easynet.card import ModelCard, quality_text, read_card
from easynet.errors import InputError
from easynet.predict import Predictor

MAX_MODELS_ENV = "EASYNET_MAX_MODELS"
DEFAULT_MAX_MODELS = 4
PRECISION_ENV = "EASYNET_PRECISION"  # auto (default), fp32 or bf16: the server's inference precision
BACKEND_ENV = "EASYNET_BACKEND"  # optimized (default), eager, onnx or compiled: the server's inference backend
log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """What a picker shows about one checkpoint."""

    name: str  # the file stem; unique across both folders (shipped names win)
    path: Path
    source: str  # "shipped" or "fine-tuned"
    category: str | None = None
    preset: str | None = None
    image_size: int | None = None
    modality: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        facts = [self.category or "?", self.preset or "?", f"{self.image_size}px" if self.image_size else None]
        facts.append(self.quality)
        return f"{self.name} ({', '.join(f for f in facts if f)}; {self.source})"

    @property
    def quality(self) -> str | None:
        """The validation I-AUROC with the number of images behind it, e.g. 'val I-AUROC 0.974 on 44 images
        (32 synthetic)'; None when the checkpoint carries no validation metric."""
        return quality_text(self.metrics)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "category": self.category,
            "preset": self.preset,
            "image_size": self.image_size,
            "modality": self.modality,
            "validation": self.metrics,
        }


_meta_cache: dict[tuple[str, int, int], ModelInfo | None] = {}  # None: unreadable
_meta_lock = threading.Lock()


def _info(path: Path, source: str) -> ModelInfo | None:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _meta_lock:
        if key in _meta_cache:
            return _meta_cache[key]
    try:
        card: ModelCard = read_card(path)
    except Exception as err:  # an unreadable file is left out of the picker, not fatal
        log.warning("left out of the model list: %s", err)
        with _meta_lock:
            _meta_cache[key] = None
        return None
    info = ModelInfo(
        path.stem, path, source, card.category, card.preset, card.image_size, card.modality, dict(card.validation)
    )
    with _meta_lock:
        _meta_cache[key] = info
    return info


def list_models() -> list[ModelInfo]:
    """Every checkpoint in checkpoints/, <workspace>/models/ (shared by all sessions) and the current session's
    models/ (its fine-tuned ones), shipped first, each name once."""
    found: dict[str, ModelInfo] = {}
    folders = [
        (workspace.checkpoints_dir(), "shipped"),
        (workspace.root() / "models", "fine-tuned"),
        (workspace.folder(sessions.owner()) / "models", "fine-tuned"),
    ]
    for folder, source in folders:
        for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
            if path.stem not in found and not path.name.startswith("."):
                info = _info(path, source)
                if info is not None:
                    found[path.stem] = info
    return list(found.values())


def choices() -> list[tuple[str, str]]:
    """(label, name) pairs for a gr.Dropdown."""
    return [(m.label, m.name) for m in list_models()]


def find(name: str | None) -> ModelInfo:
    models = list_models()
    if not models:
        raise InputError("no checkpoints found: add one to checkpoints/ or fine-tune one in the Fine-tune tab")
    if not name:
        return models[0]
    for m in models:
        if m.name == name or m.label == name:
            return m
    raise InputError(f"there is no model called {name!r}; choose one of {', '.join(m.name for m in models)}")


def for_category(category: str | None) -> str | None:
    """The name of a model trained on `category` (shipped first), if any."""
    return next((m.name for m in list_models() if category and m.category == category), None)


class PredictorCache:
    """Thread-safe LRU of loaded Predictors; at most `size` models stay in memory."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size or int(os.environ.get(MAX_MODELS_ENV, DEFAULT_MAX_MODELS))
        self._items: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str | None) -> Predictor:
        info = find(name)
        key = (str(info.path), info.path.stat().st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            predictor = Predictor.from_checkpoint(
                info.path,
                backend=os.environ.get(BACKEND_ENV) or "optimized",
                precision=os.environ.get(PRECISION_ENV) or "auto",
                name=info.name,
            )
            if predictor.precision_note:
                log.warning("%s", predictor.precision_note)
            self._items[key] = predictor
            while len(self._items) > max(1, self.size):
                self._items.popitem(last=False)
            return predictor

    def __len__(self) -> int:
        return len(self._items)


predictors = PredictorCache()
