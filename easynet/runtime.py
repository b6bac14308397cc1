"""Device and thread choices, made by callers (the model code never picks a device)."""

from __future__ import annotations

import os

import torch

from easynet.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    return torch.device(device)


def configure_threads() -> int:
    """Use every core for intra-op parallelism unless the user set OMP/torch threads; returns the count."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    return torch.get_num_threads()
