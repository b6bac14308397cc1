"""One image's result and its verdict: OK, NG or UNSURE with a reason, re-thresholded without the network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from easynet.data.preprocess import Frame
from easynet.errors import InputError
from easynet.gate import use_fused
from easynet.inputs import ModelInput
from easynet.visualize import verdict_scale

VERDICTS = ("OK", "NG", "UNSURE")
BORDERLINE_RATIO = 1.10  # an NG whose score is less than this many times its threshold is "borderline"


@dataclass(frozen=True)
class Verdict:
    """What every front end shows for one image: OK, NG or UNSURE, and why when it is not plain."""

    label: str  # one of VERDICTS
    reason: str | None  # why UNSURE; for OK/NG a note the engineer should read (None when there is nothing)
    score: float
    threshold: float
    head: str
    gate: str
    borderline: bool = False
    typicality: float | None = None  # distance / the reference's limit; above 1 the part is atypical

    @property
    def ratio(self) -> float:
        return self.score / self.threshold if self.threshold > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.label,
            "reason": self.reason,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "score_over_threshold": round(self.ratio, 3),
            "head": self.head,
            "gate": self.gate,
            "borderline": self.borderline,
            "typicality": None if self.typicality is None else round(self.typicality, 3),
        }


@dataclass
class Prediction:
    """One image's result. Maps are at the model resolution (S, S)."""

    score: float  # max of the mean-filtered anomaly map of the head that was used
    head_threshold: float  # that head's calibrated threshold (sensitivity 1)
    floor: float  # that head's clean noise floor (the bottom of the heat map's colour bar)
    gate: str  # requested mode
    used: str  # "rgb" or "fused"
    entropy_rgb: float | None
    entropy_fused: float | None
    alpha: float
    anomaly_map: np.ndarray  # (S, S) the used head's score map (the scale of `score` and `threshold`)
    rec_rgb: np.ndarray  # (S, S, 3) [0, 1]
    rec_depth: np.ndarray | None  # (S, S)
    inputs: ModelInput
    model: str = ""  # the model's name
    version: int | None = None  # the model's registry version (the app's), None for a plain file
    category: str | None = None  # what the model was trained on
    model_has_depth: bool = False
    sensitivity: float = 1.0
    typicality: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    gate_rule: str = "entropy"  # how control picks a head (ModelConfig.gate_rule)
    # under the "score" rule in control: each head's image score / its threshold, {"rgb": .., "fused": ..}
    head_scores: dict[str, float] | None = None
    # the model was chosen automatically: every candidate model's typicality for this image ({model: typicality})
    candidates: dict[str, float] | None = None

    @property
    def threshold(self) -> float:
        """The head's threshold divided by the sensitivity (2 flags more images, 0.5 fewer)."""
        return self.head_threshold / self.sensitivity

    @property
    def is_anomalous(self) -> bool:
        return self.score >= self.threshold

    def light(self) -> Prediction:
        """A copy without the full-size point cloud and mask (what a session keeps between events)."""
        return dataclasses.replace(self, inputs=dataclasses.replace(self.inputs, xyz=None, foreground_full=None))

    def with_sensitivity(self, sensitivity: float) -> Prediction:
        """The same prediction judged at another sensitivity (no network run)."""
        if not sensitivity > 0:
            raise InputError(f"sensitivity must be a positive number, got {sensitivity}")
        return dataclasses.replace(self, sensitivity=float(sensitivity))

    @property
    def verdict(self) -> Verdict:
        """OK, NG or UNSURE: an atypical part is UNSURE (its verdict is not trusted); an RGB-D model given no depth
        is UNSURE unless the RGB head already calls the part NG (geometric defects cannot be seen)."""
        facts = {"score": self.score, "threshold": self.threshold, "head": self.used, "gate": self.gate}
        facts["typicality"] = self.typicality
        what = self.category or "the part this model was trained on"
        if self.typicality is not None and self.typicality > 1:
            if self.candidates:
                reason = (
                    f"this part does not look like the part of any model (closest: {self.model}, "
                    f"{self.typicality:.1f}x its typical-part limit): another part or a very large defect; "
                    "verdict not trusted"
                )
            else:
                reason = (
                    f"this part does not look like {what} ({self.typicality:.1f}x the typical-part limit): another "
                    "part or a very large defect; verdict not trusted"
                )
            return Verdict("UNSURE", reason, **facts)
        if self.model_has_depth and self.inputs.depth is None:
            if self.is_anomalous:
                return Verdict("NG", "no depth was given: only what shows in colour was checked", **facts)
            return Verdict("UNSURE", "no depth: geometric defects cannot be seen; give the depth file", **facts)
        ratio = self.score / self.threshold if self.threshold > 0 else float("inf")
        borderline = self.is_anomalous and ratio < BORDERLINE_RATIO
        reason = "borderline: less than 10 % over the threshold; look closely before rejecting" if borderline else None
        return Verdict("NG" if self.is_anomalous else "OK", reason, borderline=borderline, **facts)

    @property
    def heatmap(self) -> np.ndarray:
        """(S, S) anomaly map on the verdict scale: noise floor 0, the threshold 0.5 (the colour bar's middle)."""
        return verdict_scale(self.anomaly_map, self.floor, self.threshold)

    @property
    def heatmap_original(self) -> np.ndarray:
        """``heatmap`` on the uploaded image's own pixels and aspect (padding removed), in [0, 1]."""
        return np.clip(self.on_original(self.heatmap), 0.0, 1.0)

    def on_original(self, values: np.ndarray) -> np.ndarray:
        """An (S, S) map of this prediction on the uploaded image's (H, W) pixels."""
        frame = self.inputs.frame or Frame.fit(self.inputs.original_size, values.shape[0], "stretch")
        return frame.to_original(values)

    @property
    def gate_reason(self) -> str:
        """Why this head was used, in words (the app and `predict --json` show it)."""
        if self.head_scores is not None:
            rgb, fused = self.head_scores["rgb"], self.head_scores["fused"]
            if self.used == "fused":
                return (
                    f"depth judged informative: the fused head scores {fused:.2f}x its threshold, more than "
                    f"the RGB head's {rgb:.2f}x"
                )
            return f"RGB alone: the RGB head scores {rgb:.2f}x its threshold, at least the fused head's {fused:.2f}x"
        if self.entropy_rgb is None or self.entropy_fused is None:
            if self.gate == "open" and self.used == "fused":
                return "RGB + depth: the gate is open"
            if self.inputs.depth is None:
                if self.inputs.framed_from == "rgb":
                    return "RGB alone: no depth was given, so the part was framed from the RGB image (less reliable)"
                if self.inputs.frame is not None and self.inputs.frame.mode == "object":
                    return (
                        "RGB alone: no depth was given and no part was found in the RGB image, so the whole image "
                        "was scored, not framed as in training (less reliable)"
                    )
                return "RGB alone: no depth was given"
            return "RGB alone: the gate is closed" if self.gate == "close" else "RGB alone: the model has no depth head"
        bound = f"H(fused) {self.entropy_fused:.4f} vs H(rgb) {self.entropy_rgb:.4f} + alpha {self.alpha:.4f}"
        if self.used == "fused":
            return f"depth judged informative: {bound.replace(' vs ', ' > ')}"
        return f"RGB alone: {bound.replace(' vs ', ' <= ')}, depth judged uninformative"

    @property
    def entropy_rule_head(self) -> str | None:
        """The head the paper's entropy rule picks for this image, whichever rule or gate was used; None without
        both entropies (no depth, or a gate that did not run both heads)."""
        if self.entropy_rgb is None or self.entropy_fused is None:
            return None
        if self.gate == "control" and self.gate_rule == "entropy":
            return self.used  # it decided (with the authors' >= where the checkpoint's score rule says so)
        return "fused" if use_fused("control", self.entropy_rgb, self.entropy_fused, self.alpha) else "rgb"

    def to_json(self) -> dict[str, Any]:
        """The fields of `easynet predict --json` (plain types); ``summary`` is the verdict."""
        return {
            "model": self.model,
            "version": self.version,
            "category": self.category,
            "summary": self.verdict.to_json(),
            "score": self.score,
            "threshold": self.threshold,
            "normalized_score": self.score / self.threshold if self.threshold > 0 else float("inf"),
            "is_anomalous": self.is_anomalous,  # score >= threshold, before the verdict's other checks
            "sensitivity": self.sensitivity,
            "gate": self.gate,
            "used": self.used,
            "entropy_rgb": self.entropy_rgb,
            "entropy_fused": self.entropy_fused,
            "alpha": self.alpha,
            "gate_rule": self.gate_rule,
            "head_scores": self.head_scores,
            "gate_reason": self.gate_reason,
            "entropy_rule_head": self.entropy_rule_head,
            "has_depth": self.inputs.depth is not None,
            "typicality": self.typicality,
            "candidates": self.candidates,
            "image_size": int(self.anomaly_map.shape[0]),
            "timings_ms": {k: round(v * 1000, 2) for k, v in self.timings.items()},
        }
