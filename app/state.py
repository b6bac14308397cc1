"""The workspace folder and its database, which every other part of the app's state hangs from.

EASYNET_WORKSPACE (default ./workspace) holds the files; ``store()`` is its SQLite database (easynet.store), one
``Store`` per folder and process. app/sessions.py and app/workspace.py both build on this module.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from easynet.store import Store

WORKSPACE_ENV = "EASYNET_WORKSPACE"
DEFAULT_WORKSPACE = "workspace"

_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def root() -> Path:
    """The workspace folder (created on first use); read from the environment on every call."""
    path = Path(os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def store(folder: Path | None = None) -> Store:
    """The database of ``folder`` (default: the workspace)."""
    path = Path(folder).resolve() if folder is not None else root()
    with _stores_lock:
        if path not in _stores:
            _stores[path] = Store(path)
        return _stores[path]
