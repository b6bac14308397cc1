"""Checkpoints: one file with weights, the config that built them, calibration and provenance.

Loading is strict and uses ``torch.load(weights_only=True)``, so a file carrying code is refused without
running it. Writes are atomic (temporary file + rename). Also imports the authors' released 2-layer Fusion1
state_dict by renaming its keys one to one.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from easynet.atomic import atomic_write
from easynet.config import (
    MODEL_PRESETS,
    ModelConfig,
    RetiredSettingError,
    TrainConfig,
    config_to_dict,
    model_config_from_dict,
    train_config_from_dict,
)
from easynet.errors import CheckpointError, InputError
from easynet.model import EasyNet
from easynet.typical import TypicalReference

FORMAT = "easynet-3d-checkpoint"
VERSION = 1
# bounds a checkpoint's header must respect before any model is built from it (an absurd width or size would
# allocate gigabytes); the paper preset uses base_width 128, head_width 512, image_size 256
CONFIG_BOUNDS = {
    "base_width": (1, 512),
    "head_width": (2, 4096),
    "image_size": (16, 2048),
    "depth_channels": (1, 3),
    "se_reduction": (1, 1024),
}
# authors' module prefix -> ours (see easynet/model.py); every key is renamed, nothing else changes
OFFICIAL_PREFIXES = {
    "encoder.": "rgb.encoder.",
    "decoder.": "rgb.decoder.",
    "encoder_d.": "depth.encoder.",
    "decoder_d.": "depth.decoder.",
    "mlp1.": "rgb_merges.0.",
    "mlp2.": "rgb_merges.1.",
    "mlp1_d.": "depth_merges.0.",
    "mlp2_d.": "depth_merges.1.",
    "mlp3.": "rgb_head.net.",
    "mlp4.": "fused_head.net.",
}


@dataclass
class HeadCalibration:
    """Per-head image threshold and heat-map scale (anomaly probability mapped to [0, 1] for display).

    ``norm_mean`` and ``norm_scale`` ((S, S) float32 tensors, or None) are the head's position-wise score
    normalisation, fitted on clean validation images when it wins there (evaluate.calibrate): the head's map
    becomes (probability - norm_mean) / norm_scale before it is scored, so that places where clean parts
    always light up (a border, a fixed feature) stop deciding the verdict. Threshold and heat-map scale are
    then on that normalised scale.
    """

    threshold: float = 0.5
    pixel_low: float = 0.0
    pixel_high: float = 1.0
    norm_mean: torch.Tensor | None = None
    norm_scale: torch.Tensor | None = None

    @property
    def normalised(self) -> bool:
        return self.norm_mean is not None and self.norm_scale is not None

    def summary(self) -> dict[str, Any]:
        """Plain numbers for JSON (the normalisation maps as their shape)."""
        out: dict[str, Any] = {"threshold": self.threshold, "pixel_low": self.pixel_low, "pixel_high": self.pixel_high}
        out["position_norm"] = list(self.norm_mean.shape) if self.normalised else None
        return out


@dataclass
class Calibration:
    """Everything fitted on the validation split: the gate's alpha, the per-head scales and the typical-part
    reference (easynet.typical; None in checkpoints calibrated before it existed)."""

    alpha: float = 0.0
    rgb: HeadCalibration = field(default_factory=HeadCalibration)
    fused: HeadCalibration = field(default_factory=HeadCalibration)
    rule: str = "uncalibrated defaults"
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics behind the choice
    reference: TypicalReference | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        data = dict(data)
        rgb, fused = HeadCalibration(**data.pop("rgb", {})), HeadCalibration(**data.pop("fused", {}))
        reference = data.pop("reference", None)
        reference = TypicalReference.from_dict(reference) if reference is not None else None
        return cls(rgb=rgb, fused=fused, reference=reference, **data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors, as a checkpoint stores it."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "reference"}
        out["rgb"], out["fused"] = dataclasses.asdict(self.rgb), dataclasses.asdict(self.fused)
        out["reference"] = self.reference.to_dict() if self.reference is not None else None
        return out

    def head(self, fused: bool) -> HeadCalibration:
        return self.fused if fused else self.rgb

    def summary(self) -> dict[str, Any]:
        """Plain data for JSON and the CLI's `info` (no tensors)."""
        return {
            "alpha": self.alpha,
            "rgb": self.rgb.summary(),
            "fused": self.fused.summary(),
            "rule": self.rule,
            "metrics": self.metrics,
            "reference": None if self.reference is None else self.reference.summary(),
        }


@dataclass
class Checkpoint:
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    calibration: Calibration = field(default_factory=Calibration)
    train_config: TrainConfig | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # data, steps, metrics, timings, command
    stored_half: bool = False  # the file held fp16 weights (shipped checkpoints): saving again keeps them so

    def build_model(self) -> EasyNet:
        """The model with these weights (on CPU, eval mode), loaded strictly."""
        model = EasyNet(self.model_config)
        problems = state_dict_mismatch(model.state_dict(), self.state_dict)
        if problems:
            raise CheckpointError(
                f"the weights do not fit the architecture named in the checkpoint ({problems}); "
                "the file was saved for another preset or edited"
            )
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()


def state_dict_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """'' when keys and shapes agree, else a short description of what differs."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [k for k in expected if k in given and tuple(expected[k].shape) != tuple(given[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} shape mismatches (e.g. {k}: {tuple(given[k].shape)} vs {tuple(expected[k].shape)})"
        )
    return ", ".join(parts)


def save_checkpoint(ckpt: Checkpoint, path: str | Path, half: bool = False) -> Path:
    """Write atomically; ``half`` stores floating-point weights as fp16 (shipped checkpoints)."""
    state = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in ckpt.state_dict.items()
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config_to_dict(ckpt.model_config),
        "train_config": config_to_dict(ckpt.train_config) if ckpt.train_config else None,
        "calibration": ckpt.calibration.to_dict(),
        "provenance": ckpt.provenance,
        "state_dict": state,
    }
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give the path of a .pt file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path.name} is empty; it is not an EasyNet-3D checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path.name} was refused: it holds Python objects other than tensors and plain data "
            "(possibly code), which EasyNet-3D never loads"
        ) from err
    except Exception as err:  # zip, EOF, memo and storage errors all mean a damaged file
        raise CheckpointError(
            f"{path.name} cannot be read as a checkpoint: it is truncated or corrupt; expected a "
            "complete .pt file written by EasyNet-3D"
        ) from err


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate an EasyNet-3D checkpoint (tensors moved to CPU, whatever device saved them)."""
    path = Path(path)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and any(k.startswith(tuple(OFFICIAL_PREFIXES)) for k in payload):
            raise CheckpointError(
                f"{path.name} is a bare state_dict (the authors' weights?); convert it with "
                "`python -m easynet import-official --weights FILE --out CKPT`"
            )
        raise CheckpointError(
            f"{path.name} is not an EasyNet-3D checkpoint (no '{FORMAT}' header); expected a "
            "file written by `easynet train` or the app"
        )
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path.name} was written by a newer EasyNet-3D (format {payload['version']})")
    try:
        cfg = model_config_from_dict(payload["model_config"])
        train = train_config_from_dict(payload["train_config"]) if payload.get("train_config") else None
        calibration = Calibration.from_dict(payload.get("calibration") or {})
        raw = payload["state_dict"]
        half = any(v.dtype == torch.float16 for v in raw.values() if isinstance(v, torch.Tensor))
        state = {k: v.float() if v.is_floating_point() else v for k, v in raw.items()}
    except RetiredSettingError as err:
        raise CheckpointError(
            f"{path.name} was made with a {err}; this version cannot rebuild it faithfully, so it is refused (the "
            "release tagged experiments-retired loads it; research/README.md lists what was retired)"
        ) from err
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path.name} has a damaged header: {err}") from err
    _check_config(cfg, path.name)
    _check_calibration(calibration, path.name, cfg.image_size)
    _check_finite(state, path.name)
    return Checkpoint(cfg, state, calibration, train, payload.get("provenance") or {}, stored_half=half)


def _check_config(cfg: ModelConfig, name: str) -> None:
    """Refuses a header whose architecture is out of CONFIG_BOUNDS (checked before any model is built)."""
    for key, (low, high) in CONFIG_BOUNDS.items():
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise CheckpointError(
                f"{name} has an impossible model config: {key} is {value!r}, expected an integer "
                f"from {low} to {high}; the file was edited or damaged"
            )


def _check_calibration(calibration: Calibration, name: str, size: int) -> None:
    """Refuses a calibration whose alpha, thresholds, heat-map scale or position norm are not finite numbers
    (norm maps must be (S, S) at the model's input size, with a positive scale)."""
    values = {"alpha": calibration.alpha}
    for head in ("rgb", "fused"):
        for key in ("threshold", "pixel_low", "pixel_high"):
            values[f"{head}.{key}"] = getattr(calibration.head(head == "fused"), key)
    for key, value in values.items():
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        if bad or (key.endswith("threshold") and value <= 0):
            raise CheckpointError(
                f"{name} has a broken calibration: {key} is {value!r}, expected a finite number "
                "(thresholds above 0); recalibrate it with `easynet calibrate`"
            )
    problem = calibration.reference.check() if calibration.reference is not None else None
    if problem:
        raise CheckpointError(
            f"{name} has a broken calibration: its typical-part reference's {problem}; recalibrate it with "
            "`easynet calibrate`"
        )
    for head in ("rgb", "fused"):
        h = calibration.head(head == "fused")
        maps = [m for m in (h.norm_mean, h.norm_scale) if m is not None]
        if not maps:
            continue
        ok = len(maps) == 2 and all(isinstance(m, torch.Tensor) and tuple(m.shape) == (size, size) for m in maps)
        if not ok or not all(bool(torch.isfinite(m).all()) for m in maps) or not bool((maps[1] > 0).all()):
            raise CheckpointError(
                f"{name} has a broken calibration: the {head} head's position norm is not a pair of finite "
                f"{size}x{size} maps with a positive scale; recalibrate it with `easynet calibrate`"
            )


def _check_finite(state: dict[str, torch.Tensor], name: str) -> None:
    """Refuses weights holding NaN or inf (a diverged training run or a damaged file): they would score nan."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{name} has a damaged header: weight {key} is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{name} holds non-finite weights (NaN or inf in {key}); it comes from a diverged "
                "training run or is damaged, so it is refused; retrain it or use another checkpoint"
            )


def start_config(ckpt: Checkpoint, asked: ModelConfig | dict[str, Any], name: str) -> ModelConfig:
    """The architecture to fine-tune or resume from: the checkpoint's own. `asked` is the config or the model
    options (field -> value) the caller gave; one that differs from the checkpoint's is refused, never silently
    replaced."""
    have = ckpt.model_config
    if isinstance(asked, ModelConfig):
        asked = {f.name: getattr(asked, f.name) for f in dataclasses.fields(asked)}
    order = [f.name for f in dataclasses.fields(have)]
    clash = {k: asked[k] for k in sorted(asked, key=order.index) if getattr(have, k) != asked[k]}
    if clash:
        theirs = ", ".join(f"{k}={getattr(have, k)!r}" for k in clash)
        yours = ", ".join(f"{k}={v!r}" for k, v in clash.items())
        raise InputError(
            f"{name} holds a model with {theirs}, not the {yours} asked for; leave out those model "
            "options to train with the checkpoint's architecture"
        )
    return have


def load_model(path: str | Path) -> tuple[EasyNet, Checkpoint]:
    """Load a checkpoint and build its model (CPU, eval mode)."""
    ckpt = load_checkpoint(path)
    try:
        return ckpt.build_model(), ckpt
    except CheckpointError as err:
        raise CheckpointError(f"{Path(path).name}: {err}") from err


def import_official_state_dict(
    state: dict[str, torch.Tensor], cfg: ModelConfig | None = None
) -> dict[str, torch.Tensor]:
    """Rename the authors' 2-layer Fusion1 keys to ours; strict: every key and shape must match those of
    ``cfg`` (default ``official_config()``; narrower widths only in tests)."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in OFFICIAL_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"unexpected key {key!r}: this is not the authors' 2-layer Fusion1 model")
        renamed[OFFICIAL_PREFIXES[prefix] + key[len(prefix) :]] = value
    expected = EasyNet(cfg or official_config()).state_dict()
    missing = sorted(set(expected) - set(renamed))
    if missing:
        raise CheckpointError(f"{len(missing)} keys of the 2-layer Fusion1 model are missing (e.g. {missing[0]})")
    for key, value in renamed.items():
        if key not in expected or tuple(value.shape) != tuple(expected[key].shape):
            shape = tuple(expected[key].shape) if key in expected else None
            raise CheckpointError(f"{key} has shape {tuple(value.shape)}, expected {shape}")
    return renamed


# The authors' input handling and score rule (their MVTec 3D-AD preprocessing, data loader and test.py): BGR
# images, background RGB zeroed and zero padding to a square, 8-bit min-max Z depth, raw probability of the head
# the gate chose, 21x21 mean filter counting zero padding, gate open on H_fused >= H_rgb + alpha.
OFFICIAL_INPUT = {
    "input_order": "bgr",
    "depth_encoding": "z_minmax",
    "rgb_background": "zero",
    "resize": "pad",
    "score_rule": "official",
}
# Their per-class alpha (checkpoint/checkpoint.yaml, key `entropy`; MVTec 3D-AD only, apparently tuned on test).
OFFICIAL_ALPHA = {
    "bagel": 0.38,
    "cable_gland": 0.44,
    "carrot": 0.0,
    "cookie": 0.0,
    "dowel": 0.0,
    "foam": 0.0,
    "peach": -0.29,
    "potato": 0.0,
    "rope": -0.11,
    "tire": 0.0,
}


def official_config() -> ModelConfig:
    """The authors' released model: the `paper` preset with their input handling and score rule."""
    return MODEL_PRESETS["paper"].replace(**OFFICIAL_INPUT)


def import_official(
    weights: str | Path, out: str | Path, alpha: float | None = None, category: str | None = None
) -> Path:
    """Convert the authors' released .pth into an EasyNet-3D checkpoint (their inputs, histogram gate and score
    rule). The gate's alpha is ``alpha`` when given, else the authors' value for ``category``, else 0."""
    if category is not None and category not in OFFICIAL_ALPHA:
        raise CheckpointError(
            f"no authors' alpha for {category!r}; they published one for "
            f"{', '.join(OFFICIAL_ALPHA)} (or give the alpha itself)"
        )
    raw = _torch_load(Path(weights))
    if not isinstance(raw, dict):
        raise CheckpointError(f"{Path(weights).name} does not hold a state_dict")
    state = import_official_state_dict(raw)
    if alpha is not None:
        value, rule = float(alpha), f"alpha {float(alpha):g} given to import-official; thresholds not calibrated"
    elif category is not None:
        value, rule = OFFICIAL_ALPHA[category], f"authors' alpha for {category}; thresholds not calibrated"
    else:
        value, rule = 0.0, "authors' default alpha 0; thresholds not calibrated"
    ckpt = Checkpoint(
        official_config(),
        state,
        Calibration(alpha=value, rule=rule),
        provenance={
            "source": "authors' released 2-layer Fusion1 weights",
            "file": Path(weights).name,
            "category": category,
        },
    )
    return save_checkpoint(ckpt, out)
