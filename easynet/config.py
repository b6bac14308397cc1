"""Configuration dataclasses for the model and for training, and their presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    # Not in the paper: the depth stream's full-resolution merge also sees the depth reconstruction residual
    # (input - reconstruction, detached), so a dent that the autoencoder repaired is one pointwise feature
    # away from the fused head instead of a comparison it has to learn (benchmarks/RECIPE.md)
    depth_residual: bool = False
    # Not in the paper: a training-only linear head on the depth stream's merges, judged (focal loss) against the
    # part of the anomaly that is in depth. The fused head can lean on RGB and leave the depth stream without a
    # segmentation gradient ("depth-blind" runs, benchmarks/RECIPE.md); this head keeps that gradient on every
    # image. Inference never uses it (the gate still picks the RGB or the fused head).
    depth_head: bool = False

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
        if self.depth_head and not self.has_depth:
            raise ValueError("depth_head needs modality='rgbd' (it reads the depth stream)")
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
        # a fixed depth scale per checkpoint, fitted on its training set (benchmarks/RECIPE.md, two seeds per arm)
        depth_encoding="metric",
        # the input square follows the part that plane removal finds, so small parts get the pixels of large
        # ones (benchmarks/RECIPE.md: judged on two parts added for it, two seeds per arm)
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
    # fixed scale ("metric", unless depth_amplitude_mm is set)
    depth_amplitude: tuple[float, float] = (0.1, 0.5)
    # |displacement| in millimetres, log-uniform, for "metric" depth (applied in metres, before the scale), e.g.
    # (0.3, 4.0). None: depth_amplitude of the scale. Millimetre ranges left `lite` depth-blind: half of such
    # anomalies are under what a 128 px network resolves, and it learned that depth carries nothing (RECIPE.md)
    depth_amplitude_mm: tuple[float, float] | None = None
    # Depth displacement profile: (rim = a flat step with a softened edge, dome = a smooth bowl or bump with no
    # edge), relative weights (synth.PROFILES).
    depth_profile_weights: tuple[float, float] = (1.0, 0.0)
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
    milestones: tuple[float, float] = (0.8, 0.9)  # LR x gamma at these fractions of training
    gamma: float = 0.2
    seed: int = 66
    weight_ssim: float = 1.0
    weight_l2_rgb: float = 1.0
    weight_l2_depth: float = 1.0
    weight_focal: float = 1.0
    focal_gamma: float = 2.0
    num_workers: int = 0
    amp: bool = True  # autocast on CUDA (bf16 where supported, else fp16 with a gradient scaler)
    # bf16 autocast for CPU training (opt-in): faster only where the CPU computes bf16 natively (avx512_bf16 / AMX,
    # runtime.native_bf16); elsewhere oneDNN emulates it and it is slower (benchmarks/train_speed.py)
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
    # Modality dropout: the probability, per training image, that the fused head sees no RGB features (its target
    # is then only the part of the anomaly that is in depth), so that it must learn to read depth. 0: the paper.
    fused_rgb_dropout: float = 0.0
    # Depth-only view of the fused head: every training step also runs the fused head with its RGB features zeroed
    # and adds this weight times its focal loss against the part of the anomaly that is in depth, so the fused head
    # learns to read depth on every image. 0: the paper (no extra pass).
    fused_depth_view_weight: float = 0.0
    # Restarts for a run whose fused head ends depth-blind on validation (its depth-only synthetic anomalies scored
    # no better than evaluate.DEPTH_BLIND_AUROC): train again from scratch with the next seed, at most this often.
    # Decided on validation only; the last run is kept whatever it scored.
    depth_restarts: int = 0
    # Attention warm-up of the fused head: for this fraction of the training steps its SE scores are held at 0.5
    # (an untrained SE's output) and only then learned. Tried against depth-blind runs (whose attention turns the
    # depth channels down) and not adopted: held up, the head still ignored depth (benchmarks/RECIPE.md). 0: the paper.
    fused_attention_warmup: float = 0.0
    synth: SynthConfig = field(default_factory=SynthConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fused_rgb_dropout <= 1.0:
            raise ValueError(f"fused_rgb_dropout must be in [0, 1], got {self.fused_rgb_dropout}")
        if self.depth_restarts < 0:
            raise ValueError(f"depth_restarts must be 0 or more, got {self.depth_restarts}")
        if not 0.0 <= self.fused_attention_warmup <= 1.0:
            raise ValueError(f"fused_attention_warmup must be in [0, 1], got {self.fused_attention_warmup}")
        if not 0.0 <= self.fused_depth_view_weight < float("inf"):
            raise ValueError(f"fused_depth_view_weight must be 0 or more, got {self.fused_depth_view_weight}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "official": TrainConfig(lr=2e-4, batch_size=4),
    "paper": TrainConfig(lr=2e-3, batch_size=8),
    # the `lite` model's recipe, which the shipped synthetic RGB-D checkpoints use (tools/build_offline_assets.py;
    # tablet and foam_block with --steps 2000, chosen on validation). Smooth-dome depth anomalies
    # (SynthConfig.depth_profile_weights) were tried and not adopted: benchmarks/RECIPE.md
    "lite": TrainConfig(lr=2e-3, batch_size=8, steps=800, depth_restarts=1),
    # Real photographs (MVTec 3D-AD tire, RGB): see benchmarks/real_data.py for how each choice was made.
    "base": TrainConfig(
        lr=2e-3,
        batch_size=8,
        steps=5000,  # 53.8 min on 2 cores; best on validation over 1000/3000/5000 (benchmarks/REAL_DATA.md)
        crop_size=128,
        select_every=500,
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


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a ModelConfig, rejecting unknown fields with a clear message."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
    return ModelConfig(**data)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig (with its nested SynthConfig) from plain types."""
    data = dict(data)
    synth = data.pop("synth", {}) or {}
    for key in (
        "depth_amplitude",
        "depth_amplitude_mm",
        "depth_profile_weights",
        "kind_weights",
        "shape_weights",
        "fill_weights",
    ):
        if synth.get(key) is not None:
            synth[key] = tuple(synth[key])
    if "milestones" in data:
        data["milestones"] = tuple(data["milestones"])
    return TrainConfig(**data, synth=SynthConfig(**synth))
