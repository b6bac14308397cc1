"""Atomic file writes: a temporary file in the target's folder, then ``os.replace``, so a reader (or a process
killed mid-write) sees the old file or the new one, never half of one. Files get the mode a plain ``open`` would
give them (0644 under the usual umask), not mkstemp's private 0600."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it) and put back at once
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file: 0644 under the usual umask 022


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], durable: bool = True) -> Path:
    """Call ``write(handle)`` on a hidden temporary file beside ``path`` (``.NAME.*.tmp``), then move it over
    ``path``; on any error the temporary file is removed and ``path`` is left as it was. ``durable`` also
    fsyncs before the move (off for caches, which a lost entry only costs a recomputation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600 files: reports must be readable as any other file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (``atomic_write``)."""
    return atomic_write(path, lambda handle: handle.write(data), durable)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``atomic_write``)."""
    return atomic_write_bytes(path, text.encode())
