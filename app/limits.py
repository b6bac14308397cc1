"""Bounds per request that the server enforces before the work: memory admission for the requests that run the
network on an upload, the pixel limit on every image input (the Annotate editor's too), and disk caps per session
and per workspace. The figures are in docs/reliability.md.

Memory: a request's peak is estimated from its files' headers (MB_BASE + MB_PER_MEGAPIXEL per megapixel of the RGB
image and of the depth map; measured on the Inspect handler: 27-28 MB per RGB megapixel and 54-61 with depth,
docs/reliability.md) and admitted only while the running requests leave that much of EASYNET_MEMORY_MB free; a
request larger than the whole budget is refused with a sentence, one that waits too long is told the server is busy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from easynet.data.io import depth_shape, image_shape, max_pixels
from easynet.errors import InputError
from easynet.settings import env_int

MEMORY_ENV = "EASYNET_MEMORY_MB"
DEFAULT_MEMORY_MB = 2048  # what the network requests of all sessions may use at once
MB_BASE = 100  # a request's fixed part: the model, the pictures at display size, the 3D view
MB_PER_MEGAPIXEL = 30  # per megapixel of the RGB image, and again of the depth map (measured 27-28; rounded up)
WAIT_S = 120  # a request waits this long for memory before it is told the server is busy
SESSION_DISK_ENV, WORKSPACE_DISK_ENV = "EASYNET_MAX_SESSION_MB", "EASYNET_MAX_WORKSPACE_MB"
DEFAULT_SESSION_MB, DEFAULT_WORKSPACE_MB = 2048, 20480


def estimate_mb(rgb: str | Path | None, depth: str | Path | None = None) -> float:
    """The peak memory (MB) of predicting on these files, from their headers (nothing decoded)."""
    mb = MB_BASE
    for path, shape in ((rgb, image_shape), (depth, depth_shape)):
        if path:
            h, w = shape(path)
            mb += MB_PER_MEGAPIXEL * h * w / 1e6
    return mb


class MemoryBudget:
    """Admits requests while their estimated peaks fit in the budget together (a condition variable; FIFO enough
    for a handful of concurrent requests)."""

    def __init__(self, total_mb: float | None = None) -> None:
        self._total = total_mb
        self.used = 0.0
        self._cond = threading.Condition()

    @property
    def total(self) -> float:
        return self._total if self._total is not None else env_int(MEMORY_ENV, DEFAULT_MEMORY_MB, "a number of MB")

    @contextmanager
    def hold(self, mb: float, wait_s: float = WAIT_S) -> Iterator[None]:
        if mb > self.total:
            raise InputError(
                f"this image needs about {mb:.0f} MB of server memory, more than the {self.total:.0f} MB that "
                f"requests may use at once (set {MEMORY_ENV} to raise it); downscale it"
            )
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self.used + mb > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InputError("the server is busy with other large images; try again in a minute")
                self._cond.wait(left)
            self.used += mb
        try:
            yield
        finally:
            with self._cond:
                self.used -= mb
                self._cond.notify_all()


memory = MemoryBudget()


@contextmanager
def admitted(rgb: str | Path | None, depth: str | Path | None = None) -> Iterator[None]:
    """Run the block once this request's estimated memory fits (see MemoryBudget)."""
    with memory.hold(estimate_mb(rgb, depth)):
        yield


def check_pixels(path: str | Path, what: str = "image") -> None:
    """The pixel limit from the header of an image the app received any way (the editor too)."""
    h, w = image_shape(path)
    if h * w > max_pixels():
        raise InputError(
            f"{what} {Path(path).name} is {w}x{h} pixels, more than the limit of {max_pixels()} pixels; "
            "downscale it or set EASYNET_MAX_PIXELS to raise the limit"
        )


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (files vanishing during the walk are skipped)."""
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else []:
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            continue
    return total


def check_disk(session_folder: Path, workspace_folder: Path, incoming: int = 0) -> None:
    """Refuses new work when the session's folder or the whole workspace would pass its cap."""
    session_cap = env_int(SESSION_DISK_ENV, DEFAULT_SESSION_MB, "a number of MB") * 2**20
    workspace_cap = env_int(WORKSPACE_DISK_ENV, DEFAULT_WORKSPACE_MB, "a number of MB") * 2**20
    used = folder_bytes(session_folder)
    if used + incoming > session_cap:
        raise InputError(
            f"this session's files take {used / 2**20:.0f} MB and this needs {incoming / 2**20:.0f} MB more, past "
            f"the limit of {session_cap / 2**20:.0f} MB per session (set {SESSION_DISK_ENV} to raise it); delete "
            "annotations or wait until old batch reports are removed"
        )
    used = folder_bytes(workspace_folder)
    if used + incoming > workspace_cap:
        raise InputError(
            f"the server's workspace is full ({used / 2**20:.0f} MB of {workspace_cap / 2**20:.0f} MB; set "
            f"{WORKSPACE_DISK_ENV} to raise it); try again later"
        )


def checked_editor(preprocess: Any) -> Any:
    """An ImageEditor's preprocess that refuses pictures over the pixel limit from their headers, before Gradio
    decodes them, and turns any decoding failure into one sentence."""
    from app.ui import error

    def run(payload: Any) -> Any:
        try:
            for part in _editor_files(payload):
                check_pixels(part, "the editor's picture")
            return preprocess(payload)
        except InputError as err:
            raise error(str(err)) from None
        except Exception:
            raise error("the editor's picture could not be read; upload the image again") from None

    return run


def _editor_files(payload: Any) -> list[str]:
    if payload is None:
        return []
    parts = [getattr(payload, "background", None), getattr(payload, "composite", None)]
    parts += list(getattr(payload, "layers", None) or [])
    return [p.path for p in parts if p is not None and getattr(p, "path", None)]
