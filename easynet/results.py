"""Typed results of the pipeline's front doors: a training run's summary and a checkpoint's evaluation report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

WORSE_TOLERANCE = 0.01  # validation I-AUROC a fine-tune may lose to its parent before it counts as worse
HEADLINE = ("i_auroc_control", "i_auroc_close")  # the validation figure compared (RGB-only models have close only)


def headline(metrics: dict[str, Any] | None) -> float | None:
    """The validation figure a model is compared by: control's I-AUROC, else close's (RGB-only models)."""
    for key in HEADLINE:
        value = (metrics or {}).get(key)
        if isinstance(value, (int, float)) and value == value:
            return float(value)
    return None


def worse_than(child: dict[str, Any] | None, parent: dict[str, Any] | None, tolerance: float = WORSE_TOLERANCE):
    """Whether ``child``'s headline figure is below ``parent``'s by more than ``tolerance`` (None: one lacks it)."""
    a, b = headline(child), headline(parent)
    return None if a is None or b is None else a < b - tolerance


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
    parent_validation: dict[str, Any] | None = None
    """A fine-tune's parent measured on the same validation data (its `Calibration.metrics`); None otherwise."""

    def worse_than_parent(self, tolerance: float = WORSE_TOLERANCE) -> bool | None:
        """Whether the fine-tuned model's headline validation I-AUROC is below its parent's by more than
        ``tolerance`` (the noise of a validation set this size); None when there is nothing to compare."""
        return worse_than(self.validation, self.parent_validation, tolerance)

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
