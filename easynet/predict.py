"""The Predictor: the one front door that the CLI, the batch runner and the web app call.

A ``Predictor`` holds a loaded model, its calibration and its ``ModelCard`` (easynet.card: name, category,
version, validation figures); ``predict`` returns a ``Prediction`` (easynet.prediction), which knows its verdict
(OK, NG or UNSURE with a reason) and can be re-thresholded without running the network again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easynet.backends import AUTO, choose, make_runner
from easynet.batching import BatchingRunner
from easynet.card import ModelCard
from easynet.checkpoint import Calibration, load_checkpoint
from easynet.config import ModelConfig
from easynet.data.io import read_depth, read_rgb
from easynet.data.types import DepthMap
from easynet.errors import InputError, NonFiniteError
from easynet.gate import BOTH_HEADS, MODES, runner_mode, use_fused
from easynet.inputs import ModelInput, prepare_input
from easynet.model import EasyNet
from easynet.prediction import Prediction, Verdict
from easynet.runtime import configure_threads, resolve_device, resolve_precision
from easynet.scoring import image_scores, position_normalise, valid_masks


class Predictor:
    """Loads a checkpoint once and predicts images; thread-safe: the network calls of concurrent `predict` calls
    run as one batch (easynet.batching), each call getting exactly its own result."""

    def __init__(
        self,
        model: EasyNet,
        calibration: Calibration,
        device: torch.device,
        card: ModelCard | None = None,
        backend: str = "optimized",
        precision: str = "auto",
        *,
        force_precision: bool = False,
    ) -> None:
        """``force_precision``: run ``precision`` ("fp32" or "bf16") as given, emulated where the device lacks it
        (the bf16 accuracy guard measures bf16 rounding on any CPU); otherwise runtime.resolve_precision."""
        self.model = model.to(device).eval()
        self.cfg: ModelConfig = model.cfg
        self.calibration = calibration
        self.device = device
        self.card = card or ModelCard.of(model.cfg)
        self.backend = backend
        # precision_note: one sentence when the asked-for precision was not available (bf16 on a CPU without it)
        self.precision, self.precision_note = resolve_precision(precision, device)
        if force_precision:
            self.precision, self.precision_note = precision, None
        self.backend_note: str | None = None  # what `auto` chose and why (logged once, shown by `easynet info`)
        if backend == AUTO:
            choice = choose(self.model, device, self.precision)
            self.backend, self.runner, self.backend_note = choice.backend, choice.runner, choice.note
        else:
            self.runner = make_runner(self.model, device, backend, self.precision)
        if self.backend == "onnx":
            self.precision = "fp32"
        self.runner = BatchingRunner(self.runner)

    @property
    def name(self) -> str:
        return self.card.name

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        backend: str = "optimized",
        precision: str = "auto",
        *,
        name: str | None = None,
        version: int | None = None,
    ) -> Predictor:
        """Load a checkpoint; ``backend`` is "optimized" (BN folded, channels-last; default), "eager" (the model as
        trained), "compiled", "onnx" or "auto" (the fastest that agrees, timed here; easynet.backends); ``precision``
        is "auto", "fp32" or "bf16"."""
        configure_threads()
        ckpt = load_checkpoint(path)
        card = ModelCard.from_checkpoint(ckpt, name or Path(path).stem, version)
        return cls(ckpt.build_model(), ckpt.calibration, resolve_device(device), card, backend, precision)

    def _tensors(self, inputs: ModelInput) -> tuple[torch.Tensor, torch.Tensor | None]:
        rgb = inputs.rgb[..., ::-1] if self.cfg.input_order == "bgr" else inputs.rgb
        rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        depth_t = None
        if inputs.depth is not None and self.cfg.has_depth:
            depth_t = torch.from_numpy(inputs.depth)[None, None]
        return rgb_t, depth_t  # on the CPU; the runner moves them to its device and layout

    def predict(
        self,
        rgb: str | Path | np.ndarray,
        depth: str | Path | np.ndarray | DepthMap | None = None,
        gate: str = "control",
        sensitivity: float = 1.0,
    ) -> Prediction:
        """Score one image. Without depth (or with an RGB-only model) the gate is closed.

        Args:
            sensitivity: the threshold is divided by it (2.0 flags more images, 0.5 fewer).
        """
        return self.predict_gates(rgb, depth, (gate,), sensitivity)[gate]

    def predict_gates(
        self,
        rgb: str | Path | np.ndarray,
        depth: str | Path | np.ndarray | DepthMap | None = None,
        gates: Sequence[str] = MODES,
        sensitivity: float = 1.0,
    ) -> dict[str, Prediction]:
        """Score one image under several gate modes: the files are read and the input (plane removal included)
        is prepared once, then the network runs once per mode. Returns {gate: Prediction}."""
        for gate in gates:
            if gate not in MODES:
                raise InputError(f"gate must be one of {', '.join(MODES)}, got {gate!r}")
        if not (sensitivity > 0 and np.isfinite(sensitivity)):  # inf would divide the threshold to 0
            raise InputError(f"sensitivity must be a positive number, got {sensitivity}")
        t0 = time.perf_counter()
        inputs = prepare_input(rgb, depth, self.cfg)
        prepared = time.perf_counter() - t0
        return {gate: self._score(inputs, gate, sensitivity, prepared) for gate in dict.fromkeys(gates)}

    def _score(self, inputs: ModelInput, gate: str, sensitivity: float, prepared: float) -> Prediction:
        t1 = time.perf_counter()
        rgb_t, depth_t = self._tensors(inputs)
        alpha, cal = self.calibration.alpha, self.calibration
        head_scores = None
        with torch.inference_mode():
            mode = runner_mode(gate, self.cfg.gate_rule, depth_t is not None)
            out = self.runner(rgb_t, depth_t, mode, alpha)
            if mode == BOTH_HEADS:  # the score rule: both heads score the image in one pass, the more alarmed wins
                rgb_map, rgb_score = self._head_score(out._replace(anomaly_map=out.anomaly_map_rgb), inputs, False)
                fused_map, fused_score = self._head_score(out, inputs, True)
                head_scores = {"rgb": rgb_score / cal.rgb.threshold, "fused": fused_score / cal.fused.threshold}
                used_fused = bool(
                    use_fused(
                        gate, None, None, rule="score", ratio_rgb=head_scores["rgb"], ratio_fused=head_scores["fused"]
                    )
                )
                score_map, score = (fused_map, fused_score) if used_fused else (rgb_map, rgb_score)
            else:
                used_fused = bool(out.used_fused[0])
                score_map, score = self._head_score(out, inputs, used_fused)
        t2 = time.perf_counter()
        head = cal.head(used_fused)
        rec_rgb = out.rec_rgb[0].float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
        if self.cfg.input_order == "bgr":
            rec_rgb = rec_rgb[..., ::-1]
        rec_depth = None if out.rec_depth is None else out.rec_depth[0].float().mean(0).cpu().numpy()
        h_rgb, h_fused = float(out.entropy_rgb[0]), float(out.entropy_fused[0])
        return Prediction(
            score=score,
            head_threshold=head.threshold,
            floor=head.pixel_low,
            gate=gate,
            used="fused" if used_fused else "rgb",
            entropy_rgb=None if np.isnan(h_rgb) else h_rgb,
            entropy_fused=None if np.isnan(h_fused) else h_fused,
            alpha=alpha,
            anomaly_map=score_map[0].cpu().numpy(),
            rec_rgb=np.ascontiguousarray(rec_rgb),
            rec_depth=rec_depth,
            inputs=inputs,
            model=self.name,
            version=self.card.version,
            category=self.card.category,
            model_has_depth=self.cfg.has_depth,
            sensitivity=float(sensitivity),
            typicality=self._typicality(out),
            timings={"preprocess": prepared, "network": t2 - t1},
            gate_rule=self.cfg.gate_rule,
            head_scores=head_scores,
        )

    def _typicality(self, out: Any) -> float | None:
        """How typical the input is for this model (easynet.typical), None without a reference."""
        reference = self.calibration.reference
        if reference is None or out.pooled_rgb is None:
            return None
        depth = None if out.pooled_depth is None else out.pooled_depth[0].float().cpu().numpy()
        return float(reference.typicality(out.pooled_rgb[0].float().cpu().numpy(), depth))

    def _head_score(self, out: Any, inputs: ModelInput, fused: bool) -> tuple[torch.Tensor, float]:
        """(score map, image score) of a runner's output from the given head; a non-finite score is refused."""
        score_map = position_normalise(out.anomaly_map.float(), self.calibration.head(fused))
        official = self.cfg.score_rule == "official"
        score = float(image_scores(score_map, self.cfg.image_size, valid_masks([inputs]), official)[0])
        if not np.isfinite(score):  # never a verdict: NaN compares False with any threshold and would pass
            raise NonFiniteError(
                f"model {self.name or '?'} produced a non-finite anomaly score ({score}) for this "
                "image, so there is no verdict; its weights are damaged or diverged, retrain it"
            )
        return score_map, score


class AutoPredictor:
    """Several Predictors behind one front door: each image is scored by every model that carries a typical-part
    reference, and the prediction of the model the part is most typical for is returned (its ``candidates`` hold
    every model's typicality, so the choice can be shown and undone)."""

    def __init__(self, predictors: Sequence[Predictor]) -> None:
        self.predictors = [p for p in predictors if p.calibration.reference is not None]
        if not self.predictors:
            raise InputError(
                "automatic model choice needs checkpoints with a typical-part reference; add one with "
                "`easynet calibrate --reference-only`, or choose a model by name"
            )
        self.card = ModelCard("auto", None, None, "rgbd", 0, "score")
        self.precision_note = None

    @property
    def name(self) -> str:
        return self.card.name

    def predict(
        self,
        rgb: str | Path | np.ndarray,
        depth: str | Path | np.ndarray | DepthMap | None = None,
        gate: str = "control",
        sensitivity: float = 1.0,
    ) -> Prediction:
        """The prediction of the best-fitting model (the files are read once for all models)."""
        image = read_rgb(rgb) if isinstance(rgb, (str, Path)) else rgb
        depth = read_depth(depth) if isinstance(depth, (str, Path)) else depth
        results = [p.predict(image, depth, gate=gate, sensitivity=sensitivity) for p in self.predictors]
        candidates = {r.model: round(float(r.typicality), 4) for r in results}
        best = min(results, key=lambda r: r.typicality)
        best.candidates = candidates
        return best


def auto_predictor(folder: str | Path, **options: Any) -> AutoPredictor:
    """An AutoPredictor over every checkpoint in ``folder`` (``options`` go to Predictor.from_checkpoint)."""
    paths = sorted(Path(folder).glob("*.pt"))
    if not paths:
        raise InputError(f"no checkpoints in {Path(folder).name}/ to choose from; give a checkpoint file")
    return AutoPredictor([Predictor.from_checkpoint(p, **options) for p in paths])


__all__ = ["AutoPredictor", "ModelCard", "Prediction", "Predictor", "Verdict", "auto_predictor"]
