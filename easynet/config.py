"""Configuration dataclasses for the model and for training, and their presets."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from easynet.errors import InputError

GATE_SCORINGS = ("attention", "histogram")
MODALITIES = ("rgbd", "rgb")
RESIZE_MODES = ("stretch", "letterbox", "pad", "object")
DEPTH_ENCODINGS = ("height", "metric", "z_minmax")
RGB_BACKGROUNDS = ("keep", "zero")
SCORE_RULES = ("calibrated", "official")
# how the control gate picks a head: "entropy", the paper's H_fused > H_rgb + alpha; "score", the head whose
# calibrated image score (score / its threshold) is higher, i.e. the head more alarmed by this image
GATE_RULES = ("entropy", "score")
PRECISIONS = ("auto", "fp32", "bf16")  # inference precision (runtime.resolve_precision)
SCHEDULES = ("step", "cosine")  # learning-rate schedules after the warm-up (train.learning_rate)


@dataclass(frozen=True)
class ModelConfig:
    """Every architecture setting of EasyNet; a checkpoint stores it and rebuilds the model from it.

    The encoder has five blocks of widths (w, 2w, 4w, 8w, 8w) with w = ``base_width``; the decoder starts
    from the bottleneck only (no skip connections). ``layers`` feature scales feed the segmentation heads:
    each scale concatenates an encoder block with the decoder block of the same resolution and is merged by
    a 1x1 convolution to ``head_width`` channels.
    """

    base_width: int = 128
    head_width: int = 512  # per-scale merge width; head hidden widths are (head_width, head_width // 2)
    layers: int = 2  # number of feature scales, 1..3 (the paper's Table 4)
    image_size: int = 256
    modality: str = "rgbd"  # "rgbd": both branches and the fused head; "rgb": RGB branch only
    depth_channels: int = 3  # the authors replicate depth to 3 channels; 1 is enough
    attention: bool = False  # SE channel attention at each head's input (the paper's gate scores)
    se_reduction: int = 16
    gate_scoring: str = "histogram"  # "attention": entropy of SE scores (paper); "histogram": authors' code
    head_out_norm: bool = True  # authors' layout: BN + LeakyReLU after the 2-channel logits layer
    input_order: str = "rgb"  # "bgr" for the authors' MVTec 3D-AD weights (they read images with OpenCV)
    # "height": height above the table / the image's own highest point; "metric": height in metres /
    # depth_scale, one scale per checkpoint fitted on its training set; "z_minmax": the authors' Z / max(Z),
    # 8-bit (data/geometry.py, encode_depth)
    depth_encoding: str = "height"
    depth_scale: float = 0.0  # metres per unit of the "metric" depth input (0: not fitted yet)
    # "stretch" to S x S; "letterbox": keep the aspect ratio, pad; "pad": the authors' zero padding to a square
    # (sides rounded up to 100 px) and then S x S; "object": a square around the depth foreground, so small parts
    # get as many pixels as large ones (data/preprocess.py)
    resize: str = "stretch"
    rgb_background: str = "keep"  # "zero": RGB set to 0 on measured points off the object (authors' input)
    # "calibrated": scores / per-head thresholds, mean filter without padding, gate H_fused > H_rgb + alpha;
    # "official": the authors' raw chosen-head probability, 21x21 filter counting zero padding, >= in the gate
    score_rule: str = "calibrated"
    gate_rule: str = "entropy"  # GATE_RULES: how "control" picks a head

    def __post_init__(self) -> None:
        if self.layers not in (1, 2, 3):
            raise ValueError(f"layers must be 1, 2 or 3, got {self.layers}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.gate_scoring not in GATE_SCORINGS:
            raise ValueError(f"gate_scoring must be one of {GATE_SCORINGS}, got {self.gate_scoring!r}")
        if self.gate_scoring == "attention" and not self.attention:
            raise ValueError("gate_scoring='attention' needs attention=True (the SE blocks give the scores)")
        if self.input_order not in ("rgb", "bgr"):
            raise ValueError(f"input_order must be 'rgb' or 'bgr', got {self.input_order!r}")
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth_encoding must be one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}")
        if not self.depth_scale >= 0:
            raise ValueError(f"depth_scale must be >= 0 metres, got {self.depth_scale}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.rgb_background not in RGB_BACKGROUNDS:
            raise ValueError(f"rgb_background must be one of {RGB_BACKGROUNDS}, got {self.rgb_background!r}")
        if self.score_rule not in SCORE_RULES:
            raise ValueError(f"score_rule must be one of {SCORE_RULES}, got {self.score_rule!r}")
        if self.gate_rule not in GATE_RULES:
            raise ValueError(f"gate_rule must be one of {GATE_RULES}, got {self.gate_rule!r}")
        if self.gate_rule == "score" and self.score_rule == "official":
            raise ValueError("the authors' score rule gates by entropy; use gate_rule='entropy' with it")
        if self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (four 2x poolings), got {self.image_size}")

    @property
    def encoder_widths(self) -> tuple[int, ...]:
        w = self.base_width
        return (w, 2 * w, 4 * w, 8 * w, 8 * w)

    @property
    def has_depth(self) -> bool:
        return self.modality == "rgbd"

    @property
    def metric_scale(self) -> float | None:
        """Metres per depth unit when the depth input is metric (synthetic dents are sized in mm), else None."""
        return self.depth_scale if self.depth_encoding == "metric" else None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


# `paper` is the authors' released 2-layer Fusion1 model (140.6 M parameters); its state_dict maps one to one
# onto the official keys. `lite` keeps the architecture with narrow widths so it trains on a CPU in minutes;
# it uses the paper's SE-attention gate and plain logits. `base` is for real photographs (e.g. MVTec 3D-AD):
# wider, 256 px, aspect ratio kept (letterbox) so that small defects keep their shape; it trains on random
# crops (TRAIN_PRESETS["base"]) and predicts on the whole letterboxed image.
MODEL_PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    "lite": ModelConfig(
        base_width=8,
        head_width=32,
        image_size=128,
        depth_channels=1,
        attention=True,
        se_reduction=4,
        gate_scoring="attention",
        head_out_norm=False,
        # beats the paper's entropy rule on cross-fitted validation, tuned and held-out parts alike
        # (benchmarks/UNSEEN_PARTS.md); the entropy rule stays available by name
        gate_rule="score",
        # a fixed depth scale per checkpoint, fitted on its training set (research/RECIPE.md, two seeds per arm)
        depth_encoding="metric",
        # the input square follows the part that plane removal finds, so small parts get the pixels of large
        # ones (research/RECIPE.md: judged on two parts added for it, two seeds per arm)
        resize="object",
    ),
    "base": ModelConfig(
        base_width=12,
        head_width=48,
        image_size=256,
        modality="rgb",
        depth_channels=1,
        attention=True,
        se_reduction=4,
        gate_scoring="attention",
        head_out_norm=False,
        resize="letterbox",
    ),
}


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic-anomaly settings (Perlin masks, textures, depth displacement)."""

    anomaly_probability: float = 0.5  # about half the training samples stay clean (paper: 1:1)
    min_perlin_scale: int = 0  # scales 2**0 .. 2**5
    max_perlin_scale: int = 6
    threshold: float = 0.5
    beta_max: float = 0.8  # RGB blend: aug = (1 - beta) * texture + beta * image inside the mask
    # |displacement| in units of the depth input: of the image's highest point ("height") or of the checkpoint's
    # fixed scale ("metric")
    depth_amplitude: tuple[float, float] = (0.1, 0.5)
    # Where the anomaly lives among anomalous samples: both modalities (the paper), RGB only, depth only.
    kind_weights: tuple[float, float, float] = (0.5, 0.25, 0.25)
    texture_dir: str | None = None  # optional folder of texture images (e.g. DTD); procedural otherwise
    # Mask shapes: (Perlin blobs, scratches = thin polylines, spots = small ellipses), relative weights.
    shape_weights: tuple[float, float, float] = (1.0, 0.0, 0.0)
    # RGB content inside the mask: (texture blend as DRAEM, a patch of the same image cut from elsewhere and
    # pasted (CutPaste / NSA), a darkening or brightening of the surface), relative weights.
    fill_weights: tuple[float, float, float] = (1.0, 0.0, 0.0)
    # Rescale textures to the image's own brightness and contrast under the mask (dark parts get dark
    # anomalies, not white blobs).
    match_intensity: bool = False
    # Without depth, place anomalies on the object found in RGB (data/foreground.py) instead of anywhere.
    rgb_foreground: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Defaults follow the authors' code (Adam 2e-4); the paper's lr 0.002 and batch 8
    are the ``paper`` training preset."""

    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-4
    milestones: tuple[float, float] = (0.8, 0.9)  # LR x gamma at these fractions of training ("step" schedule)
    gamma: float = 0.2
    schedule: str = "step"  # SCHEDULES: "step" (the milestones above, the paper) or "cosine" (decay to 0)
    warmup_steps: int = 0  # linear LR warm-up from 0 over this many steps (fine-tuning a trained model uses it)
    seed: int = 66
    weight_ssim: float = 1.0
    weight_l2_rgb: float = 1.0
    weight_l2_depth: float = 1.0
    weight_focal: float = 1.0
    focal_gamma: float = 2.0
    num_workers: int = 0
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16 with a gradient scaler)
    # bf16 autocast for CPU training where the CPU computes bf16 natively (avx512_bf16 / AMX, runtime.native_bf16);
    # elsewhere oneDNN would emulate it, slower, so such CPUs train in fp32 (benchmarks/train_speed.py)
    cpu_bf16: bool = False
    checkpoint_every: int = 0  # steps between periodic checkpoints (0: only at the end)
    epochs: int = 0  # when > 0, training length in passes over the training set (overrides steps)
    crop_size: int = 0  # when > 0, train on random crops of this side (fully convolutional; predict whole image)
    select_every: int = 0  # when > 0, score the model on validation every N steps and keep the best weights
    # train in channels-last memory format (same maths; on 2 CPU cores `lite` trains 1.22x faster in the whole
    # loop, benchmarks/train_speed.py); saved weights are contiguous either way
    channels_last: bool = True
    # calibration may normalise each head's map position by position where that wins on validation
    # (evaluate.fit_position_norm); False keeps the raw probabilities
    position_norm: bool = True
    # Restarts for a run whose fused head ends depth-blind on validation (its depth-only synthetic anomalies scored
    # no better than evaluate.DEPTH_BLIND_AUROC): train again from scratch with the next seed, at most this often.
    # Decided on validation only; the last run is kept whatever it scored.
    depth_restarts: int = 0
    synth: SynthConfig = field(default_factory=SynthConfig)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {self.warmup_steps}")
        if self.depth_restarts < 0:
            raise ValueError(f"depth_restarts must be 0 or more, got {self.depth_restarts}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "official": TrainConfig(lr=2e-4, batch_size=4),
    "paper": TrainConfig(lr=2e-3, batch_size=8),
    # the `lite` model's recipe, which the shipped synthetic RGB-D checkpoints use (tools/build_offline_assets.py;
    # research/RECIPE.md for how it was chosen)
    "lite": TrainConfig(lr=2e-3, batch_size=8, steps=800, depth_restarts=1),
    # Real photographs (MVTec 3D-AD tire, RGB): benchmarks/real_data.py for how each choice was made; length,
    # schedule and precision by the rule of research/REAL_TIRE.md (R2: 3200 cosine steps after a 5 % warm-up, bf16
    # where the CPU has it natively; 17.4 min of steps on 2 Xeon cores, against 31 min for the 5000 before)
    "base": TrainConfig(
        lr=2e-3,
        batch_size=8,
        steps=3200,
        schedule="cosine",
        warmup_steps=160,
        cpu_bf16=True,
        crop_size=128,
        select_every=400,
        synth=SynthConfig(
            shape_weights=(0.5, 0.25, 0.25),
            fill_weights=(0.4, 0.3, 0.3),
            match_intensity=True,
            rgb_foreground=True,
            max_perlin_scale=7,
        ),
    ),
}


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Serialise a config dataclass to plain Python types (for checkpoints and JSON)."""
    return dataclasses.asdict(cfg)


class RetiredSettingError(ValueError):
    """A stored config uses a setting that this version no longer has, at a value that changed what it did."""


def _is_neutral(value: Any) -> bool:
    """Whether a setting's value selects nothing extra: off, zero, none, or all weight on the first option (what
    the code without that setting does)."""
    if value is None or value is False or (isinstance(value, (int, float)) and value == 0):
        return True
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return value[0] > 0 and all(v == 0 for v in value[1:])
    return False


def _known_fields(cls: type, data: dict[str, Any], section: str) -> dict[str, Any]:
    """``data`` without the settings ``cls`` does not have. Retired experiments (research/README.md) are dropped
    when their value is neutral (old checkpoints stored every field); any other unknown setting is refused."""
    known = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - known):
        if not _is_neutral(data[key]):
            raise RetiredSettingError(
                f"{section} setting {key}={data[key]!r} is not part of this version of EasyNet-3D (an experiment "
                "that was retired, or a file from elsewhere)"
            )
    return {k: v for k, v in data.items() if k in known}


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a ModelConfig; unknown settings are dropped when neutral, else refused (``_known_fields``)."""
    return ModelConfig(**_known_fields(ModelConfig, data, "model"))


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig (with its nested SynthConfig) from plain types (unknown settings as in
    ``model_config_from_dict``)."""
    data = _known_fields(TrainConfig, dict(data), "training")
    synth = _known_fields(SynthConfig, dict(data.pop("synth", {}) or {}), "synthetic-anomaly")
    for key, value in synth.items():
        if isinstance(value, list):
            synth[key] = tuple(value)
    if "milestones" in data:
        data["milestones"] = tuple(data["milestones"])
    return TrainConfig(**data, synth=SynthConfig(**synth))


# --- overrides: `--set key=value` ---------------------------------------------------------------------------
SECTIONS = {"model": ModelConfig, "train": TrainConfig, "synth": SynthConfig}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse(text: str, kind: Any, key: str) -> Any:
    """``text`` as a value of the annotated type ``kind`` (bool, int, float, str, an optional, a tuple of floats)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", ""):
            return None
        return _parse(text, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if len(parts) != len(args):
            raise InputError(f"setting {key} takes {len(args)} comma-separated numbers, got {text!r}")
        return tuple(_parse(p, a, key) for p, a in zip(parts, args))
    if kind is bool:
        if text.lower() in ("1", "true", "on", "yes"):
            return True
        if text.lower() in ("0", "false", "off", "no"):
            return False
        raise InputError(f"setting {key} is on or off (true/false), got {text!r}")
    try:
        value = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        raise InputError(
            f"setting {key} takes {'a whole number' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"setting {key} takes a finite number, got {text!r}")
    return value


def settings_help() -> str:
    """Every settable key, for `--set` errors and help."""
    return ", ".join(
        f"{'' if section != 'synth' else 'synth.'}{name}"
        for section, cls in SECTIONS.items()
        for name in _field_types(cls)
        if name != "synth"
    )


def apply_overrides(
    model: ModelConfig, train: TrainConfig, assignments: Sequence[str]
) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """``model`` and ``train`` with ``key=value`` assignments applied (``lr=1e-3``, ``synth.depth_amplitude=0.2,0.5``,
    ``layers=3``; ``model.``/``train.`` prefixes are optional). Returns (model, train, the model changes asked for).

    Unknown keys, unparsable values and values the dataclasses refuse are one sentence each.
    """
    changes: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set takes key=value, got {item!r}")
        section, _, name = key.rpartition(".")
        sections = [section] if section else [s for s in ("train", "model") if name in _field_types(SECTIONS[s])]
        if (
            not sections
            or sections[0] not in SECTIONS
            or name not in _field_types(SECTIONS[sections[0]])
            or (name == "synth")
        ):
            raise InputError(f"there is no setting {key!r}; the settings are: {settings_help()}")
        kind = _field_types(SECTIONS[sections[0]])[name]
        changes[sections[0]][name] = _parse(text.strip(), kind, key)
    try:
        synth = dataclasses.replace(train.synth, **changes["synth"])
        train = dataclasses.replace(train, **changes["train"], synth=synth)
        model = dataclasses.replace(model, **changes["model"])
    except ValueError as err:
        raise InputError(str(err)) from None
    return model, train, changes["model"]
