"""Shared UI pieces: the error wrapper that turns library errors into one-sentence messages, model pickers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr

from app import models
from easynet.errors import EasyNetError

GATES = ("close", "open", "control")
GATE_HELP = "close: RGB head only · open: RGB+depth head · control: the entropy gate picks per image"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors (EasyNetError) become a gr.Error with their one sentence, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EasyNetError as err:
            raise gr.Error(str(err), print_exception=False) from None

    return wrapper


def model_dropdown(label: str = "Model", extra: list[tuple[str, str]] | None = None,
                   elem_id: str | None = None) -> gr.Dropdown:
    """A model picker listing the registry (shipped + fine-tuned checkpoints)."""
    choices = (extra or []) + models.choices()
    # allow_custom_value: API callers may name a model fine-tuned after the page was built (checked by models.find)
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label=label,
                       info="category, preset, validation I-AUROC and where it comes from",
                       allow_custom_value=True, elem_id=elem_id)


def refreshed(value: str | None, extra: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """An update with the current model list that keeps the selection when it still exists."""
    choices = (extra or []) + models.choices()
    names = [c[1] for c in choices]
    return gr.update(choices=choices, value=value if value in names else (names[0] if names else None))
