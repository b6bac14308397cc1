"""A model's card: what a checkpoint says about its model (name, category, version, validation figures), read
without building it. Pickers, banners and reports show it; a Predictor carries it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easynet.checkpoint import Checkpoint, load_checkpoint
from easynet.config import ModelConfig

HEADLINE_METRIC = "i_auroc_control"  # the validation figure a model is summed up by (pickers, reports)


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint says about its model, read without building it: what pickers, banners and reports show."""

    name: str
    category: str | None
    preset: str | None
    modality: str
    image_size: int
    gate_rule: str
    validation: dict[str, Any] = field(default_factory=dict)  # the calibration's validation metrics
    has_reference: bool = False  # whether predictions report how typical the part is (easynet.typical)
    version: int | None = None  # the app's registry version (None for a plain file)
    parent: str | None = None  # the checkpoint it was fine-tuned or recalibrated from

    @property
    def has_depth(self) -> bool:
        return self.modality == "rgbd"

    @property
    def quality(self) -> str | None:
        """The validation I-AUROC with the number of images behind it (four images make a 1.000 cheap)."""
        return quality_text(self.validation)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, name: str, version: int | None = None) -> ModelCard:
        prov = ckpt.provenance
        return cls(
            name=name,
            category=prov.get("category"),
            preset=prov.get("preset"),
            modality=ckpt.model_config.modality,
            image_size=ckpt.model_config.image_size,
            gate_rule=ckpt.model_config.gate_rule,
            validation=dict(ckpt.calibration.metrics or {}),
            has_reference=ckpt.calibration.reference is not None,
            version=version,
            parent=prov.get("parent"),
        )

    @classmethod
    def of(cls, cfg: ModelConfig, name: str = "model") -> ModelCard:
        """A card that knows only the architecture (a model built in code, not read from a checkpoint)."""
        return cls(name, None, None, cfg.modality, cfg.image_size, cfg.gate_rule)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quality_text(metrics: dict[str, Any], key: str = HEADLINE_METRIC) -> str | None:
    """'val I-AUROC 0.974 on 44 images (32 synthetic)', or None when the metric is missing."""
    value = metrics.get(key, metrics.get("i_auroc_close") if key == HEADLINE_METRIC else None)
    if not isinstance(value, (int, float)):
        return None
    n, synthetic = metrics.get("n_images"), metrics.get("n_synthetic")
    count = f" on {n} image{'s' if n != 1 else ''}" if isinstance(n, int) else " (image count not recorded)"
    real = metrics.get("n_real_defects")
    parts = [f"{synthetic} synthetic"] if isinstance(synthetic, int) and synthetic else []
    parts += [f"{real} real defects"] if isinstance(real, int) and real else []
    if isinstance(n, int) and parts:
        count += f" ({', '.join(parts)})"
    return f"val I-AUROC {value:.3f}{count}"


def read_card(path: str | Path, name: str | None = None, version: int | None = None) -> ModelCard:
    """The ModelCard of a checkpoint file (loaded and checked, no model built)."""
    return ModelCard.from_checkpoint(load_checkpoint(path), name or Path(path).stem, version)
