"""An independent, functional re-statement of the authors' 2-layer Fusion1 forward pass, written from the
specification of their code (shared/reference/official-implementation.md, sections 2.1-2.2) on their own
state_dict key names; the parity tests compare EasyNet to it output by output.

Also builds random official-format state_dicts at 1/32 of the released widths from the released key list
(tests/data/official_2layer_Fusion1_keys.tsv), so the comparison runs on a CPU in a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

KEYS_TSV = Path(__file__).resolve().parent / "data" / "official_2layer_Fusion1_keys.tsv"
NARROW = 32  # released widths (128 ... 2048) divided by this: base width 4, head width 16
LEAK = 0.2  # LeakyReLU slope of the authors' heads
BN_EPS = 1e-5


def official_shapes(divisor: int = NARROW) -> dict[str, tuple[int, ...]]:
    """The released key list with every width of 128 or more divided by ``divisor`` (3 and 2 stay)."""
    shapes = {}
    for line in KEYS_TSV.read_text().splitlines():
        key, shape, _ = line.split("\t")
        dims = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        shapes[key] = tuple(d // divisor if d >= 128 else d for d in dims)
    return shapes


def random_official_state(seed: int = 0, divisor: int = NARROW) -> dict[str, Tensor]:
    """Random weights and non-trivial BN statistics under the authors' key names (He-scaled convolutions)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = official_shapes(divisor)
    state = {}
    for key, dims in shapes.items():
        module, name = key.rsplit(".", 1)
        is_bn = f"{module}.running_mean" in shapes
        if name == "num_batches_tracked":
            state[key] = torch.tensor(100, dtype=torch.int64)
        elif is_bn and name in ("weight", "running_var"):
            state[key] = torch.rand(dims, generator=gen) + 0.5
        elif is_bn:  # bias, running_mean
            state[key] = torch.rand(dims, generator=gen) - 0.5
        elif name == "weight":  # convolution
            fan_in = dims[1] * dims[2] * dims[3]
            state[key] = torch.randn(dims, generator=gen) * (2.0 / fan_in) ** 0.5
        else:  # convolution bias
            state[key] = torch.randn(dims, generator=gen) * 0.1
    return state


def _conv(s: dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    w = s[f"{key}.weight"]
    return F.conv2d(x, w, s[f"{key}.bias"], padding=w.shape[-1] // 2)


def _bn(s: dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    return F.batch_norm(
        x,
        s[f"{key}.running_mean"],
        s[f"{key}.running_var"],
        s[f"{key}.weight"],
        s[f"{key}.bias"],
        training=False,
        eps=BN_EPS,
    )


def _double(s: dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    """conv3x3 (0) + BN (1) + ReLU, conv3x3 (3) + BN (4) + ReLU: an encoder block or a decoder db block."""
    x = F.relu(_bn(s, f"{key}.1", _conv(s, f"{key}.0", x)))
    return F.relu(_bn(s, f"{key}.4", _conv(s, f"{key}.3", x)))


def _autoencoder(s: dict[str, Tensor], enc: str, dec: str, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """DRAEM's reconstructive network: encoder blocks b1..b5 (max-pool between), decoder db1..db4, output."""
    blocks = [_double(s, f"{enc}.block1", x)]
    for i in range(2, 6):
        blocks.append(_double(s, f"{enc}.block{i}", F.max_pool2d(blocks[-1], 2)))
    x, decoded = blocks[-1], []
    for i in range(1, 5):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        x = F.relu(_bn(s, f"{dec}.up{i}.2", _conv(s, f"{dec}.up{i}.1", x)))
        x = _double(s, f"{dec}.db{i}", x)
        decoded.append(x)
    return blocks, decoded, _conv(s, f"{dec}.fin_out.0", x)


def _pointwise(s: dict[str, Tensor], key: str, x: Tensor, index: int) -> Tensor:
    return F.leaky_relu(_bn(s, f"{key}.{index + 1}", _conv(s, f"{key}.{index}", x)), LEAK)


def _merges(s: dict[str, Tensor], suffix: str, blocks: list[Tensor], decoded: list[Tensor], size) -> list[Tensor]:
    """mlp1 on b1 + db4 at full size; mlp2 on b2 + db3, up-sampled (align_corners=False) to the image size."""
    m1 = _pointwise(s, f"mlp1{suffix}", torch.cat([blocks[0], decoded[3]], 1), 0)
    m2 = _pointwise(s, f"mlp2{suffix}", torch.cat([blocks[1], decoded[2]], 1), 0)
    return [m1, F.interpolate(m2, size=size, mode="bilinear", align_corners=False)]


def _head(s: dict[str, Tensor], key: str, x: Tensor) -> Tensor:
    for index in (0, 3, 6):  # 1x1 conv + BN + LeakyReLU, the last one too (2 channels)
        x = _pointwise(s, key, x, index)
    return x


def official_forward(s: dict[str, Tensor], rgb: Tensor, depth3: Tensor) -> dict[str, Tensor]:
    """The authors' Fusion1 forward on (B, 3, H, W) BGR and (B, 3, H, W) replicated depth, by output name."""
    size = rgb.shape[-2:]
    b, d, rec_rgb = _autoencoder(s, "encoder", "decoder", rgb)
    bd, dd, rec_depth = _autoencoder(s, "encoder_d", "decoder_d", depth3)
    m_rgb, m_depth = _merges(s, "", b, d, size), _merges(s, "_d", bd, dd, size)
    return {
        "rec_rgb": rec_rgb,
        "rec_depth": rec_depth,
        "out_mask_rgb": _head(s, "mlp3", torch.cat(m_rgb, 1)),
        "out_mask": _head(s, "mlp4", torch.cat(m_rgb + m_depth, 1)),
    }
