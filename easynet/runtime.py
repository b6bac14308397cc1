"""Device and thread choices, made by callers (the model code never picks a device)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from easynet.config import PRECISIONS
from easynet.errors import InputError

DEVICES = ("auto", "cpu", "cuda")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags with which oneDNN runs bf16 natively


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


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively: a CUDA GPU with bf16, or a CPU with avx512_bf16 or AMX (elsewhere
    bf16 is emulated by oneDNN and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(_cpu_flags() & set(NATIVE_BF16_FLAGS))


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision inference runs in ("fp32" or "bf16") and, when a request had to be changed, one sentence why.

    "auto": fp32 on every device. bf16 is opt-in because it can change results: on the shipped checkpoints it moved
    foam_block's test I-AUROC by 0.014 and flipped one tablet sample's verdict (benchmarks/bf16_guard.py, the
    accuracy guard, benchmarks/bf16_guard.py). "bf16": bf16 where the device has it natively, else fp32.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return "fp32", None
    if precision == "auto":
        return "fp32", None
    if native_bf16(device):
        return "bf16", None
    what = "this GPU" if device.type == "cuda" else "this CPU (no avx512_bf16 or AMX)"
    return "fp32", f"bf16 was asked for but {what} has no native bf16, so inference runs in fp32"


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU and library versions, for reports."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
