"""Limits read from environment variables (read on every call, so a running server follows its settings)."""

from __future__ import annotations

import os

from easynet.errors import InputError


def env_int(name: str, default: int, expected: str = "a whole number") -> int:
    """The integer value of environment variable ``name`` (``1e6`` is accepted), ``default`` when it is unset or
    empty; anything else is one sentence: "NAME must be <expected>, got '...'"."""
    value = os.environ.get(name)
    try:
        return int(float(value)) if value else default
    except ValueError:
        raise InputError(f"{name} must be {expected}, got {value!r}") from None
