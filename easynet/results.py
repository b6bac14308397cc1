"""Typed results of the pipeline's front doors: a training run's summary and a checkpoint's evaluation report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TrainSummary:
    """What `train_category` did."""

    checkpoint: str | None
    """Path of the saved checkpoint; None when the run was stopped or on a non-zero torchrun rank."""
    steps: int
    """Optimiser steps taken."""
    stopped: bool
    """True when the callback stopped the run early (a cancelled job)."""
    alpha: float | None
    """The calibrated gate threshold alpha; None without calibration."""
    validation: dict[str, Any] | None
    """The calibration metrics on the validation split (`Calibration.metrics`); None without calibration."""
    history: list[dict[str, float]]
    """One dict of loss terms per logged step."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the field names as keys."""
        return asdict(self)


@dataclass
class EvalReport:
    """A checkpoint's metrics on a category's test split; `to_dict()` is the `easynet evaluate --json` shape."""

    category: str | None
    """The category evaluated (None for a single-category dataset)."""
    checkpoint: str
    """The checkpoint's path (or name, in shipped reports)."""
    n_images: int
    """Test images evaluated."""
    gates: dict[str, dict[str, Any]]
    """{gate mode: `Metrics.to_dict()`}; the "control" entry adds "fused_fraction"."""

    def to_dict(self) -> dict[str, Any]:
        """{"category", "checkpoint", "n_images", "gates"}, JSON-ready."""
        return asdict(self)

    def i_auroc_table(self, digits: int = 3) -> dict[str, list[Any]]:
        """{gate: [I-AUROC, {defect kind: I-AUROC}]}, rounded: the compact test table of experiment logs."""
        return {
            gate: [round(m["i_auroc"], digits), {k: round(v, digits) for k, v in m["per_defect_i_auroc"].items()}]
            for gate, m in self.gates.items()
        }
