"""Shared UI pieces: the error wrapper that turns errors into one-sentence messages, the raw image upload,
model pickers."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import inspect
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio import processing_utils

from app import models
from easynet.atomic import atomic_write_bytes
from easynet.errors import EasyNetError, InputError
from easynet.settings import env_int

GATES = ("close", "open", "control")
GATE_HELP = "close: RGB head only · open: RGB+depth head · control: picks a head per image (the model's gate rule)"
INTERNAL_ERROR = "EasyNet-3D failed on this request ({name}); the server log has the details, and other requests work"
STATE_TTL_ENV = "EASYNET_STATE_TTL_S"
STATE_TTL_S = float(os.environ.get(STATE_TTL_ENV) or 900)  # a session's gr.State is dropped this long after its
# last update (read when the page is built; Gradio would otherwise keep up to 10,000 sessions' state)
STATE_SIDE = 256  # pixels; the long side of the pictures a session keeps between events (never the full image)
CONCURRENCY_ENV = "EASYNET_CONCURRENCY"
DEFAULT_CONCURRENCY = 4  # network runs at once on the server, all interactive endpoints together
SERVER_SETTING = re.compile(r"(?:,? ?\(?|; |,? or )set (EASYNET_[A-Z_]+) to raise (?:it|the limit)\)?")
log = logging.getLogger(__name__)


def inference_queue() -> dict[str, Any]:
    """Event keyword arguments that put an interactive event running the network (predict, its re-renders, compare,
    annotate's pre-fill) in one shared Gradio queue: up to EASYNET_CONCURRENCY such requests run at once, from any
    of them, instead of Gradio's one at a time per event (requests spend most of their time in upload, download
    and rendering, which overlap). Read when the page is built."""
    expected = "a whole number of requests, at least 1"
    try:
        limit = env_int(CONCURRENCY_ENV, DEFAULT_CONCURRENCY, expected)
    except EasyNetError as err:  # read while the page is built: the server does not start
        raise SystemExit(str(err)) from None
    if limit < 1:
        raise SystemExit(f"{CONCURRENCY_ENV} must be {expected}, got {limit}")
    return {"concurrency_id": "inference", "concurrency_limit": limit}


def _atomic_save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's save_pil_to_cache, written atomically: the cache path is a hash of the picture, so two concurrent
    requests that return the same picture write the same file, and Gradio's plain write_bytes truncates it while
    another client downloads it ("Too little data for declared Content-Length", found by benchmarks/load_test.py)."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    path = (Path(cache_dir) / processing_utils.hash_bytes(data) / f"{name}.{format}").resolve()
    if not path.is_file():
        atomic_write_bytes(path, data)
    return str(path)


def patch_cache_writer(module: Any = processing_utils) -> bool:
    """Installs _atomic_save_pil_to_cache in place of Gradio's writer when that writer has the signature it was
    written against (Gradio 6: img, cache_dir, name, format); otherwise leaves Gradio alone, logs why and returns
    False (a renamed or changed function must not be silently replaced by one with other arguments)."""
    original = getattr(module, "save_pil_to_cache", None)
    if original is _atomic_save_pil_to_cache:
        return True
    expected = list(inspect.signature(_atomic_save_pil_to_cache).parameters)
    if (
        original is None
        or list(inspect.signature(original).parameters) != expected
        or not hasattr(module, "encode_pil_to_bytes")
        or not hasattr(module, "hash_bytes")
    ):
        log.warning("gradio's save_pil_to_cache changed; image outputs are written by Gradio (not atomically)")
        return False
    module.save_pil_to_cache = _atomic_save_pil_to_cache  # used by gr.Image outputs (numpy and PIL)
    return True


patch_cache_writer()
_LIBC = ctypes.util.find_library("c")
_malloc_trim = getattr(ctypes.CDLL(_LIBC), "malloc_trim", None) if _LIBC else None


def release_memory() -> None:
    """Hands freed heap pages back to the system (glibc's malloc_trim; nothing elsewhere). Without it the
    arrays of a large prediction stay in the process's RSS after they are freed (glibc keeps them for reuse)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def for_browser(message: str) -> str:
    """A library sentence as a browser user should read it: limits that the CLI user may raise with an environment
    variable are, in the app, this server's limits (only its administrator can change them)."""
    return SERVER_SETTING.sub(r" (this server's limit; its administrator can raise it with \1)", message)


def number(value: Any, expected: str, *, whole: bool = False) -> float:
    """A number a caller sent (an API client may send NaN, infinity, text or nothing); anything else, or a
    fraction where ``whole``, is one sentence: ``expected`` ("steps must be a whole number of training steps"),
    then what came."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{expected}, got {value!r}") from None
    if not np.isfinite(out) or (whole and out != int(out)):
        raise InputError(f"{expected}, got {value!r}")
    return int(out) if whole else out


def error(message: str) -> gr.Error:
    """A gr.Error that stays on screen until closed (duration=None): errors must not vanish unread."""
    return gr.Error(for_browser(message), duration=None, print_exception=False)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors (EasyNetError) become a gr.Error with their one sentence; any other exception is logged
    with its traceback on the server and the user gets one sentence (INTERNAL_ERROR), never a traceback.
    The message stays on screen until the user closes it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EasyNetError as err:
            raise error(str(err)) from None
        except gr.Error:
            raise
        except Exception as err:  # a bug must not reach the user as a traceback
            log.exception("handler %s failed", getattr(fn, "__name__", fn))
            raise error(INTERNAL_ERROR.format(name=type(err).__name__)) from None
        finally:
            release_memory()

    return wrapper


def compact_state(
    rgb: str | None,
    depth: str | None,
    image: np.ndarray,
    xyz: np.ndarray | None,
    foreground: np.ndarray | None,
    heat: np.ndarray,
) -> dict[str, Any]:
    """What a session keeps between events: the uploaded files' paths and pictures of at most STATE_SIDE pixels
    (every k-th pixel of the image, the point cloud, its mask and the heat map when it is at the image's size)."""
    step = max(1, -(-max(image.shape[:2]) // STATE_SIDE))  # ceil

    def thin(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a[::step, ::step])

    return {
        "rgb": rgb,
        "depth": depth,
        "step": step,
        "image": thin(image),
        "xyz": thin(xyz),
        "foreground": thin(foreground),
        "heat": thin(heat) if heat.shape[:2] == image.shape[:2] else heat,
    }


def upload_path(value: Any) -> str | None:
    """A filepath from a gr.Image/gr.File value (str, dict with 'path', or an object with .name)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return str(getattr(value, "name", value))


def _raw_preprocess(payload: Any) -> str | None:
    """The uploaded file's path, untouched (None when nothing was uploaded)."""
    return None if payload is None else str(payload.path)


def image_upload(**kwargs: Any) -> gr.Image:
    """A gr.Image input whose uploaded file reaches the handler untouched, as a path.

    gr.Image decodes uploads with Pillow before the handler runs, so a broken file fails inside Gradio with no
    useful message and a 16-bit greyscale PNG is clipped to 8 bits. EasyNet's readers (easynet.data.io) check
    and convert every file themselves, with one-sentence errors. (An instance attribute, not a subclass: Gradio
    writes a .pyi stub beside every module that subclasses a component.)
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    image.preprocess = _raw_preprocess
    return image


def model_dropdown(
    label: str = "Model",
    extra: list[tuple[str, str]] | None = None,
    elem_id: str | None = None,
    value: str | None = None,
    auto: bool = True,
) -> gr.Dropdown:
    """A model picker listing the registry (shipped + fine-tuned checkpoints, and with ``auto`` the entry that picks
    the model per image); `value` (if listed) is chosen, else the first real model."""
    choices = (extra or []) + models.choices(auto=auto)
    # allow_custom_value: API callers may name a model fine-tuned after the page was built (checked by models.find)
    names = [c[1] for c in choices]
    first = next((n for n in names if n != models.AUTO), None)
    return gr.Dropdown(
        choices=choices,
        value=value if value in names else first,
        label=label,
        info="category, preset, validation I-AUROC (on how many images) and where it comes from",
        allow_custom_value=True,
        elem_id=elem_id,
    )


def refreshed(value: str | None, extra: list[tuple[str, str]] | None = None, auto: bool = True) -> dict[str, Any]:
    """An update with the current model list that keeps the selection when it still exists."""
    choices = (extra or []) + models.choices(auto=auto)
    names = [c[1] for c in choices]
    first = next((n for n in names if n != models.AUTO), None)
    return gr.update(choices=choices, value=value if value in names else first)
