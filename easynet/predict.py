"""The Predictor: the one front door that the CLI, the evaluator and the web app call.

Image score = max of the anomaly map after a mean filter of IMAGE_FILTER_AT_256 px at 256x256 (DRAEM's
21x21 rule, scaled with the image size; padding is not counted, so borders are not lowered). A checkpoint with
``score_rule="official"`` counts the zero padding, as the authors' ``avg_pool2d`` does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from easynet.checkpoint import Calibration, Checkpoint, load_checkpoint
from easynet.config import ModelConfig
from easynet.data.foreground import rgb_foreground
from easynet.data.geometry import frame_depth, pseudo_xyz, remove_table, zero_background
from easynet.data.io import check_depth, check_same_size, read_depth, read_rgb
from easynet.data.preprocess import Frame
from easynet.data.types import DepthMap
from easynet.errors import InputError, NonFiniteError
from easynet.fastpath import Runner, make_runner
from easynet.gate import BOTH_HEADS, MODES, decide, prefers_fused, runner_mode
from easynet.model import EasyNet
from easynet.runtime import configure_threads, resolve_device, resolve_precision

IMAGE_FILTER_AT_256 = 21


def image_filter_size(image_size: int) -> int:
    """Odd mean-filter size for the image score: 21 at 256 px, scaled with the image size."""
    k = int(round(IMAGE_FILTER_AT_256 * image_size / 256))
    return k if k % 2 else k + 1


def image_scores(
    maps: torch.Tensor, image_size: int, valid: torch.Tensor | None = None, include_pad: bool = False
) -> torch.Tensor:
    """(B, H, W) anomaly maps -> (B,) max of the mean-filtered map; ``valid`` (B, H, W) bool leaves letterbox
    padding out (it is set to 0 before filtering); ``include_pad`` counts the filter's zero padding (authors)."""
    k = image_filter_size(image_size)
    maps = maps.float() if valid is None else maps.float() * valid.to(maps.device)
    pooled = F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=include_pad)
    return pooled.flatten(1).max(dim=1).values


def position_normalise(prob: torch.Tensor, head: Any) -> torch.Tensor:
    """(B, S, S) anomaly probabilities -> the head's score maps: (p - norm_mean) / norm_scale per position when
    its calibration holds a position norm (checkpoint.HeadCalibration), else p unchanged."""
    if head is None or not head.normalised:
        return prob
    mean, scale = head.norm_mean.to(prob.device, torch.float32), head.norm_scale.to(prob.device, torch.float32)
    return (prob.float() - mean) / scale


def valid_masks(items: Any) -> torch.Tensor | None:
    """(B, S, S) bool of the image pixels of items whose ``frame`` pads (letterbox, object), or None when none does."""
    frames = [getattr(item, "frame", None) for item in items]
    if not any(f is not None and f.pads for f in frames):
        return None
    size = items[0].rgb.shape[0]
    return torch.from_numpy(np.stack([f.valid if f is not None else np.ones((size, size), bool) for f in frames]))


@dataclass
class ModelInput:
    """Preprocessed inputs at the model's resolution (S, S)."""

    rgb: np.ndarray  # (S, S, 3) float32 [0, 1], RGB
    depth: np.ndarray | None  # (S, S) float32 depth input
    foreground: np.ndarray | None  # (S, S) bool
    original_size: tuple[int, int]  # (H, W) of the uploaded image
    xyz: np.ndarray | None = None  # (H, W, 3) metres, for the 3D view (pseudo-xyz for plain depth maps)
    foreground_full: np.ndarray | None = None  # (H, W) bool at the original size
    frame: Frame | None = None  # where the image sits in the square; maps go back with frame.to_original
    framed_from: str | None = None  # "object" frames: "depth" (plane removal), "rgb" (no depth given) or None


def prepare_input(
    rgb: str | Path | np.ndarray, depth: str | Path | np.ndarray | DepthMap | None, cfg: ModelConfig
) -> ModelInput:
    """Read (when paths) and preprocess an RGB image and an optional depth source.

    ``depth`` may be a path (xyz .tiff, 16-bit .png, .npy), a DepthMap, an (H, W) z array in metres or an
    (H, W, 3) organised point cloud.
    """
    image = read_rgb(rgb) if isinstance(rgb, (str, Path)) else _check_rgb_array(rgb)
    frame = Frame.fit(image.shape[:2], cfg.image_size, cfg.resize)
    rgb_in = frame.image(image)
    if depth is None:
        framed_from = None
        if cfg.resize == "object" and cfg.has_depth:  # trained on depth-framed parts: frame the RGB object instead
            found = rgb_foreground(image.astype(np.float32) / 255.0)
            if found is not None:
                frame, framed_from = Frame.fit(image.shape[:2], cfg.image_size, "object", found), "rgb"
                rgb_in = frame.image(image)
        return ModelInput(rgb_in, None, None, image.shape[:2], frame=frame, framed_from=framed_from)
    dmap = _to_depthmap(depth)
    check_same_size(image, dmap)
    geometry = remove_table(dmap)
    prepared = frame_depth(dmap, geometry, frame, cfg.depth_encoding, cfg.depth_scale)
    if prepared.frame != frame:  # "object": the frame follows the part that plane removal found
        frame = prepared.frame
        rgb_in = frame.image(image)
    if cfg.rgb_background == "zero":
        rgb_in = frame.image(zero_background(image, prepared.background))
    xyz = dmap.xyz if dmap.xyz is not None else pseudo_xyz(dmap.z)
    framed_from = "depth" if frame.mode == "object" else None
    return ModelInput(
        rgb_in, prepared.depth, prepared.foreground, image.shape[:2], xyz, geometry.foreground, frame, framed_from
    )


def _check_rgb_array(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputError(f"an RGB image must be HxWx3, got an array of shape {a.shape}")
    return a[..., :3]


def _to_depthmap(depth: str | Path | np.ndarray | DepthMap) -> DepthMap:
    if isinstance(depth, DepthMap):
        return depth
    if isinstance(depth, (str, Path)):
        return read_depth(depth)
    a = np.asarray(depth, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 3:
        return check_depth(DepthMap(z=np.ascontiguousarray(a[..., 2]), xyz=a))
    if a.ndim == 2:
        return check_depth(DepthMap(z=a))
    raise InputError(f"depth must be HxW (z) or HxWx3 (xyz), got an array of shape {a.shape}")


@dataclass
class Prediction:
    """One image's result. Maps are at the model resolution (S, S)."""

    score: float  # max of the mean-filtered anomaly map of the head that was used
    threshold: float  # that head's calibrated threshold divided by the sensitivity
    is_anomalous: bool
    gate: str  # requested mode
    used: str  # "rgb" or "fused"
    entropy_rgb: float | None
    entropy_fused: float | None
    alpha: float
    anomaly_map: np.ndarray  # (S, S) the used head's score map: its anomaly probability, position-normalised
    # when its calibration holds a position norm (the scale of `score` and `threshold`)
    heatmap: np.ndarray  # (S, S) on the calibrated display scale [0, 1]
    rec_rgb: np.ndarray  # (S, S, 3) [0, 1]
    rec_depth: np.ndarray | None  # (S, S)
    inputs: ModelInput
    timings: dict[str, float] = field(default_factory=dict)
    gate_rule: str = "entropy"  # how control picks a head (ModelConfig.gate_rule)
    # under the "score" rule in control: each head's image score / its threshold, {"rgb": .., "fused": ..}
    head_scores: dict[str, float] | None = None

    def on_original(self, values: np.ndarray) -> np.ndarray:
        """An (S, S) map of this prediction (heat map, anomaly map) on the uploaded image's (H, W) pixels:
        letterbox padding removed, the aspect ratio restored."""
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
        """The head the paper's entropy rule (H_fused > H_rgb + alpha) picks for this image, whichever rule or gate
        was used (so a score-rule checkpoint can show what the paper's gate would have done); None without both
        entropies (no depth, or a gate that did not run both heads)."""
        if self.entropy_rgb is None or self.entropy_fused is None:
            return None
        if self.gate == "control" and self.gate_rule == "entropy":
            return self.used  # it decided (with the authors' >= where the checkpoint's score rule says so)
        return "fused" if decide(self.entropy_rgb, self.entropy_fused, self.alpha) else "rgb"

    @property
    def heatmap_original(self) -> np.ndarray:
        """(H, W) calibrated heat map on the uploaded image's pixels, in [0, 1]."""
        return np.clip(self.on_original(self.heatmap), 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        """The fields of `easynet predict --json` (plain types)."""
        return {
            "score": self.score,
            "normalized_score": self.score / self.threshold if self.threshold > 0 else float("inf"),
            "is_anomalous": self.is_anomalous,
            "threshold": self.threshold,
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
            "image_size": int(self.anomaly_map.shape[0]),
            "timings_ms": {k: round(v * 1000, 2) for k, v in self.timings.items()},
        }


def heatmap_scale(prob: np.ndarray, head: Any, clip: bool = True) -> np.ndarray:
    """Map probabilities to the calibrated display scale (same scale for every image): the head's clean
    noise floor -> 0, its typical anomaly peak -> 1. ``clip=False`` keeps the order of all values (metrics)."""
    span = max(head.pixel_high - head.pixel_low, 1e-6)
    scaled = (prob - head.pixel_low) / span
    return (np.clip(scaled, 0.0, 1.0) if clip else scaled).astype(np.float32)


class Predictor:
    """Loads a checkpoint once and predicts images; thread-safe for concurrent `predict` calls."""

    def __init__(
        self,
        model: EasyNet,
        calibration: Calibration,
        device: torch.device,
        name: str = "",
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
        self.name = name
        self.checkpoint: Checkpoint | None = None
        self.backend = backend
        # precision_note: one sentence when the asked-for precision was not available (bf16 on a CPU without it)
        self.precision, self.precision_note = resolve_precision(precision, device)
        if force_precision:
            self.precision, self.precision_note = precision, None
        if backend == "onnx":
            self.precision = "fp32"
        self.runner: Runner = make_runner(self.model, device, backend, self.precision)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", backend: str = "optimized", precision: str = "auto"
    ) -> Predictor:
        """Load a checkpoint; ``backend`` is "optimized" (BN folded, channels-last; default), "eager" (the
        model as trained) or "onnx" (onnxruntime, an optional dependency); ``precision`` is "auto", "fp32" or
        "bf16" (runtime.resolve_precision)."""
        configure_threads()
        ckpt = load_checkpoint(path)
        predictor = cls(
            ckpt.build_model(), ckpt.calibration, resolve_device(device), Path(path).stem, backend, precision
        )
        predictor.checkpoint = ckpt
        return predictor

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
        if not sensitivity > 0:
            raise InputError(f"sensitivity must be a positive number, got {sensitivity}")
        t0 = time.perf_counter()
        inputs = prepare_input(rgb, depth, self.cfg)
        prepared = time.perf_counter() - t0
        return {gate: self._score(inputs, gate, sensitivity, prepared) for gate in dict.fromkeys(gates)}

    def _score(self, inputs: ModelInput, gate: str, sensitivity: float, prepared: float) -> Prediction:
        t1 = time.perf_counter()
        rgb_t, depth_t = self._tensors(inputs)
        alpha = self.calibration.alpha
        head_scores = None
        with torch.inference_mode():
            mode = runner_mode(gate, self.cfg.gate_rule, depth_t is not None)
            if mode == BOTH_HEADS:  # the score rule: both heads score the image in one pass, the more alarmed wins
                out = self.runner(rgb_t, depth_t, mode, alpha)
                rgb_map, rgb_score = self._head_score(out._replace(anomaly_map=out.anomaly_map_rgb), inputs, False)
                score_map, score = self._head_score(out, inputs, True)
                head_scores = {
                    "rgb": rgb_score / self.calibration.rgb.threshold,
                    "fused": score / self.calibration.fused.threshold,
                }
                used_fused = bool(prefers_fused(head_scores["rgb"], head_scores["fused"]))
                if not used_fused:
                    score_map, score = rgb_map, rgb_score
            else:
                out = self.runner(rgb_t, depth_t, gate, alpha)
                used_fused = bool(out.used_fused[0])
                score_map, score = self._head_score(out, inputs, used_fused)
            head = self.calibration.head(used_fused)
        t2 = time.perf_counter()
        threshold = head.threshold / sensitivity
        prob = score_map[0].cpu().numpy()
        rec_rgb = out.rec_rgb[0].float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
        if self.cfg.input_order == "bgr":
            rec_rgb = rec_rgb[..., ::-1]
        rec_depth = None if out.rec_depth is None else out.rec_depth[0].float().mean(0).cpu().numpy()
        h_rgb, h_fused = float(out.entropy_rgb[0]), float(out.entropy_fused[0])
        return Prediction(
            score=score,
            threshold=threshold,
            is_anomalous=score >= threshold,
            gate=gate,
            used="fused" if used_fused else "rgb",
            entropy_rgb=None if np.isnan(h_rgb) else h_rgb,
            entropy_fused=None if np.isnan(h_fused) else h_fused,
            alpha=alpha,
            anomaly_map=prob,
            heatmap=heatmap_scale(prob, head),
            rec_rgb=np.ascontiguousarray(rec_rgb),
            rec_depth=rec_depth,
            inputs=inputs,
            timings={"preprocess": prepared, "network": t2 - t1},
            gate_rule=self.cfg.gate_rule,
            head_scores=head_scores,
        )

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
