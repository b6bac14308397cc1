"""EasyNet: multi-modality reconstruction network (MRN) and multi-modality segmentation network (MSN).

Pure torch: no I/O, no device choices. Layer names follow the authors' released model so that their
weights map onto this one by renaming prefixes only (see ``checkpoint.import_official_state_dict``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from easynet import gate as gate_lib
from easynet.config import ModelConfig

LEAKY_SLOPE = 0.2
INIT_STD = 0.02  # DRAEM / authors' trainer initialisation: conv ~ N(0, 0.02), BN gamma ~ N(1, 0.02)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _double_conv(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn_relu(c_in, c_mid), *_conv_bn_relu(c_mid, c_out))


def _pointwise(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]


class Encoder(nn.Module):
    """Five double-conv blocks with 2x max-pooling between them (256 -> 16 at 256x256 input)."""

    def __init__(self, c_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        c_prev = c_in
        for i, w in enumerate(widths, start=1):
            self.add_module(f"block{i}", _double_conv(c_prev, w, w))
            c_prev = w
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = [self.block1(x)]  # (B, w, H, W)
        for block in (self.block2, self.block3, self.block4, self.block5):
            feats.append(block(self.pool(feats[-1])))  # (B, w_i, H / 2^i, W / 2^i)
        return feats


class Decoder(nn.Module):
    """Four up-sampling stages from the bottleneck only (no skip connections), then a 3x3 output conv."""

    def __init__(self, widths: tuple[int, ...], c_out: int) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        stages = [(w5, w3), (w3, w2), (w2, w1), (w1, w1)]  # (stage width, output width)
        for i, (c, c_next) in enumerate(stages, start=1):
            up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.add_module(f"up{i}", nn.Sequential(up, *_conv_bn_relu(c, c)))
            self.add_module(f"db{i}", _double_conv(c, c, c_next))
        self.fin_out = nn.Sequential(nn.Conv2d(w1, c_out, 3, padding=1))

    def forward(self, bottleneck: Tensor) -> tuple[list[Tensor], Tensor]:
        feats, x = [], bottleneck  # (B, 8w, H/16, W/16)
        for i in range(1, 5):
            x = getattr(self, f"db{i}")(getattr(self, f"up{i}")(x))
            feats.append(x)  # db1 at H/8 ... db4 at H
        return feats, self.fin_out(x)


class Autoencoder(nn.Module):
    """One modality's reconstruction stream; returns the per-scale features the MSN needs."""

    def __init__(self, c_in: int, widths: tuple[int, ...], layers: int) -> None:
        super().__init__()
        self.encoder = Encoder(c_in, widths)
        self.decoder = Decoder(widths, c_in)
        self.layers = layers

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        enc = self.encoder(x)
        dec, rec = self.decoder(enc[-1])
        # scale i concatenates encoder block i with the decoder block of the same resolution
        scales = [torch.cat([enc[i], dec[3 - i]], dim=1) for i in range(self.layers)]
        return scales, rec


def scale_channels(cfg: ModelConfig) -> list[int]:
    """Channels of each scale's concatenated (encoder, decoder) feature: 2w, 3w, 6w."""
    w = cfg.base_width
    return [2 * w, 3 * w, 6 * w][: cfg.layers]


class SqueezeExcite(nn.Module):
    """SE block (Hu et al.): channel attention scores in (0, 1) from globally pooled features."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, pooled: Tensor) -> Tensor:
        return torch.sigmoid(self.fc(pooled))  # (B, C)


class SegmentationHead(nn.Module):
    """Stack of 1x1 convolutions: (L * hw) -> hw -> hw / 2 -> 2 logits.

    Its first layer is applied per scale before up-sampling (a 1x1 conv commutes with bilinear
    interpolation), which gives the same result as the authors' "upsample, concatenate, convolve" at a
    fraction of the cost; ``forward_concat`` keeps the literal version for parity tests and benchmarks.
    """

    def __init__(self, c_in: int, hidden: int, out_norm: bool) -> None:
        super().__init__()
        layers = [*_pointwise(c_in, hidden), *_pointwise(hidden, hidden // 2), nn.Conv2d(hidden // 2, 2, 1)]
        if out_norm:
            layers += [nn.BatchNorm2d(2), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, merges: list[Tensor], scores: Tensor | None, size: tuple[int, int]) -> Tensor:
        return self.net[1:](pointwise_over_scales(self.net[0], merges, scores, size))  # (B, 2, H, W)

    def forward_concat(self, merges: list[Tensor], scores: Tensor | None, size: tuple[int, int]) -> Tensor:
        up = [m if m.shape[-2:] == size else _upsample(m, size) for m in merges]
        x = torch.cat(up, dim=1)  # (B, L * hw, H, W)
        if scores is not None:
            x = x * scores[:, :, None, None]
        return self.net(x)


def pointwise_over_scales(
    conv: nn.Conv2d, merges: list[Tensor], scores: Tensor | None, size: tuple[int, int]
) -> Tensor:
    """``conv`` (1x1) over the channel concatenation of ``merges`` up-sampled to ``size``, computed per scale at
    native resolution and up-sampled afterwards (equal, since both are linear); ``scores`` (B, C) re-weight the
    input channels first (SE attention)."""
    weights = torch.split(conv.weight, [m.shape[1] for m in merges], dim=1)
    if scores is not None:
        scores = torch.split(scores, [m.shape[1] for m in merges], dim=1)
    out = None
    for i, (m, w) in enumerate(zip(merges, weights)):
        if scores is not None:
            m = m * scores[i][:, :, None, None]  # SE re-weighting of the head input
        y = F.conv2d(m, w)  # (B, c_out, h_i, w_i)
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        out = y if out is None else out + y
    return out + conv.bias[None, :, None, None]


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class EasyNetOutput(NamedTuple):
    """Everything one training/evaluation forward pass produces (fields are None when not computed)."""

    rec_rgb: Tensor  # (B, 3, H, W) RGB reconstruction
    rec_depth: Tensor | None  # (B, Cd, H, W) depth reconstruction
    logits_rgb: Tensor | None  # (B, 2, H, W) RGB head (M_rgb)
    logits_fused: Tensor | None  # (B, 2, H, W) fused RGB-D head (M)
    pooled_rgb: Tensor  # (B, L * hw) globally pooled RGB merge features
    pooled_fused: Tensor | None  # (B, 2 * L * hw) pooled RGB then depth merge features
    attn_rgb: Tensor | None  # (B, L * hw) SE scores of the RGB head input
    attn_fused: Tensor | None  # (B, 2 * L * hw) SE scores of the fused head input


class GatedOutput(NamedTuple):
    """Inference result with the gate applied per image."""

    anomaly_map: Tensor  # (B, H, W) anomaly probability of the head the gate chose
    used_fused: Tensor  # (B,) bool: True where the fused RGB-D head was used
    entropy_rgb: Tensor  # (B,) gate entropy of the RGB features (nan when not computed)
    entropy_fused: Tensor  # (B,) gate entropy of the fused features (nan when not computed)
    rec_rgb: Tensor  # (B, 3, H, W)
    rec_depth: Tensor | None  # (B, Cd, H, W)
    anomaly_map_rgb: Tensor | None = None  # (B, H, W) the RGB head's map too, in the "both" mode only
    pooled_rgb: Tensor | None = None  # (B, L * hw) globally pooled RGB merge features (the typical-part reference)
    pooled_depth: Tensor | None = None  # (B, L * hw) the same of the depth stream (None when it did not run)


class EasyNet(nn.Module):
    """RGB and depth autoencoders (MRN), per-scale 1x1 merges, an RGB head and a fused head (MSN)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths, hw, n = cfg.encoder_widths, cfg.head_width, cfg.layers
        self.rgb = Autoencoder(3, widths, n)
        self.rgb_merges = nn.ModuleList(nn.Sequential(*_pointwise(c, hw)) for c in scale_channels(cfg))
        self.rgb_head = SegmentationHead(n * hw, hw, cfg.head_out_norm)
        self.rgb_se = SqueezeExcite(n * hw, cfg.se_reduction) if cfg.attention else None
        if cfg.has_depth:
            self.depth = Autoencoder(cfg.depth_channels, widths, n)
            self.depth_merges = nn.ModuleList(nn.Sequential(*_pointwise(c, hw)) for c in scale_channels(cfg))
            self.fused_head = SegmentationHead(2 * n * hw, hw, cfg.head_out_norm)
            self.fused_se = SqueezeExcite(2 * n * hw, cfg.se_reduction) if cfg.attention else None
        self.apply(_init_weights)

    # --- building blocks -------------------------------------------------------------------------
    @staticmethod
    def _stream(ae: Autoencoder, merges: nn.ModuleList, x: Tensor) -> tuple[list[Tensor], Tensor]:
        scales, rec = ae(x)
        return [m(s) for m, s in zip(merges, scales)], rec  # merges at native scale resolution

    def _depth_in(self, depth: Tensor) -> Tensor:
        return depth.expand(-1, self.cfg.depth_channels, -1, -1) if depth.shape[1] == 1 else depth

    def _streams(self, rgb: Tensor, depth: Tensor | None):
        m_rgb, rec_rgb = self._stream(self.rgb, self.rgb_merges, rgb)
        m_depth = rec_depth = None
        if depth is not None and self.cfg.has_depth:
            m_depth, rec_depth = self._stream(self.depth, self.depth_merges, self._depth_in(depth))
        return m_rgb, rec_rgb, m_depth, rec_depth

    @staticmethod
    def _pool(merges: list[Tensor]) -> Tensor:
        # global average pooling; for integer bilinear up-sampling it equals pooling the up-sampled map
        return torch.cat([m.mean(dim=(2, 3)) for m in merges], dim=1)

    # --- forward passes --------------------------------------------------------------------------
    def forward(self, rgb: Tensor, depth: Tensor | None = None, naive: bool = False) -> EasyNetOutput:
        """Full pass with the gate fully open: both heads (training, evaluation of every gate mode).

        Args:
            rgb: (B, 3, H, W) in [0, 1].
            depth: (B, 1, H, W) normalised depth, or None for the RGB-only track.
            naive: use the literal up-sample-and-concatenate heads (reference for parity and benchmarks).
        """
        size = rgb.shape[-2:]
        m_rgb, rec_rgb, m_depth, rec_depth = self._streams(rgb, depth)
        head = "forward_concat" if naive else "forward"
        pooled_rgb = self._pool(m_rgb)
        attn_rgb = self.rgb_se(pooled_rgb) if self.rgb_se is not None else None
        logits_rgb = getattr(self.rgb_head, head)(m_rgb, attn_rgb, size)
        pooled_fused = attn_fused = logits_fused = None
        if m_depth is not None:
            pooled_fused = torch.cat([pooled_rgb, self._pool(m_depth)], dim=1)
            attn_fused = self.fused_se(pooled_fused) if self.fused_se is not None else None
            logits_fused = getattr(self.fused_head, head)(m_rgb + m_depth, attn_fused, size)
        return EasyNetOutput(
            rec_rgb, rec_depth, logits_rgb, logits_fused, pooled_rgb, pooled_fused, attn_rgb, attn_fused
        )

    def forward_gated(
        self, rgb: Tensor, depth: Tensor | None, mode: str = "control", alpha: float = 0.0
    ) -> GatedOutput:
        """Inference with the gate: runs only the work the chosen mode needs.

        ``close`` skips the depth stream and the fused head; ``control`` computes both streams and the
        entropies, then runs each image through the one head its gate chose. Without depth the gate is
        always closed.
        """
        if mode not in (*gate_lib.MODES, gate_lib.BOTH_HEADS):
            raise ValueError(f"gate mode must be one of {gate_lib.MODES}, got {mode!r}")
        both = mode == gate_lib.BOTH_HEADS  # every image through both heads: the fused map, and the RGB one beside
        batch, size = rgb.shape[0], rgb.shape[-2:]
        use_depth = depth is not None and self.cfg.has_depth and mode != "close"
        m_rgb, rec_rgb, m_depth, rec_depth = self._streams(rgb, depth if use_depth else None)
        nan = torch.full((batch,), float("nan"), device=rgb.device)
        pooled_rgb = self._pool(m_rgb)
        attn_rgb = self.rgb_se(pooled_rgb) if self.rgb_se is not None else None
        h_rgb = h_fused = nan
        pooled_depth = None
        if m_depth is None:
            used = gate_lib.use_fused("close", nan, nan)
        else:
            pooled_depth = self._pool(m_depth)
            pooled_fused = torch.cat([pooled_rgb, pooled_depth], dim=1)
            attn_fused = self.fused_se(pooled_fused) if self.fused_se is not None else None
            if mode != "open":  # control decides by them; "both" reports them (what the paper's rule would pick)
                h_rgb, h_fused = gate_lib.entropies(
                    self.cfg.gate_scoring, pooled_rgb, pooled_fused, attn_rgb, attn_fused
                )
            # "both": every image through the fused head, the RGB map beside it (the caller applies the score rule)
            official = self.cfg.score_rule == "official"
            used = gate_lib.use_fused("open" if both else mode, h_rgb, h_fused, alpha, inclusive=official)
        prob = torch.empty((batch, *size), device=rgb.device, dtype=rgb.dtype)
        prob_rgb = None
        if both and m_depth is not None:
            logits = self.rgb_head(m_rgb, attn_rgb, size)
            prob_rgb = torch.softmax(logits.float(), dim=1)[:, 1].to(prob.dtype)
        if (~used).any():
            idx = (~used).nonzero().squeeze(1)
            sub = [m[idx] for m in m_rgb]
            logits = self.rgb_head(sub, attn_rgb[idx] if attn_rgb is not None else None, size)
            prob[idx] = torch.softmax(logits.float(), dim=1)[:, 1].to(prob.dtype)
        if used.any():
            idx = used.nonzero().squeeze(1)
            sub = [m[idx] for m in m_rgb + m_depth]
            logits = self.fused_head(sub, attn_fused[idx] if attn_fused is not None else None, size)
            prob[idx] = torch.softmax(logits.float(), dim=1)[:, 1].to(prob.dtype)
        return GatedOutput(prob, used, h_rgb, h_fused, rec_rgb, rec_depth, prob_rgb, pooled_rgb, pooled_depth)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: EasyNet, image_size: int, mode: str | None = None, naive: bool = False) -> float:
    """Multiply-accumulates (in G) of one image through ``model`` at ``image_size``: the full pass with both heads
    (``mode`` None; ``naive`` with the literal concatenating heads) or the gated pass of ``mode``."""
    from torch.utils.flop_counter import FlopCounterMode

    rgb = torch.zeros(1, 3, image_size, image_size)
    depth = torch.zeros(1, 1, image_size, image_size) if model.cfg.has_depth else None
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()
        if mode is None:
            model(rgb, depth, naive=naive)
        else:
            model.forward_gated(rgb, depth, mode, 0.0)
    return counter.get_total_flops() / 2e9
