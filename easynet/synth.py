"""Synthetic anomalies for training (paper Fig. 4): Perlin masks gated by the object's foreground, a texture
blended into the RGB image and a displacement of the depth surface inside the mask.

Extension to the paper (configurable through ``SynthConfig.kind_weights``): an anomalous sample puts its
anomaly in both modalities (the paper's recipe), in RGB only, or in depth only. The RGB head is trained on
the part visible in RGB (``mask_rgb``) and the fused head on the whole anomaly (``mask``), so that the fused
head learns geometry-only defects that RGB cannot show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from easynet.config import SynthConfig
from easynet.data.foreground import rgb_foreground

TEXTURE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
ROTATION_DEG = 90.0  # Perlin field rotated by U(-90, 90) degrees
DEPTH_EDGE_SIGMA = 1.5  # px: softens the displaced region's rim into a dent / bump
DEPTH_MAX = 1.5  # the normalised depth input is clipped to [0, DEPTH_MAX]


@dataclass
class Synthetic:
    """One training pair: augmented inputs and their targets."""

    rgb: np.ndarray  # (S, S, 3) float32 augmented RGB
    depth: np.ndarray | None  # (S, S) float32 augmented depth
    mask: np.ndarray  # (S, S) float32 {0, 1}: anomaly in any modality (fused head target)
    mask_rgb: np.ndarray  # (S, S) float32 {0, 1}: anomaly visible in RGB (RGB head target)
    label: int
    frame: Any = None  # the source sample's letterbox frame, when it has one (scores leave padding out)
    kind: str = "none"  # where the anomaly lives: "both" modalities, "rgb" only, "depth" only; "none" when clean


def _fade(t: np.ndarray) -> np.ndarray:
    return 6 * t**5 - 15 * t**4 + 10 * t**3


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin noise in about [-1, 1] with ``res`` periods per axis; ``shape`` must be divisible by ``res``.

    Pierre Vigier's perlin-numpy (``generate_perlin_noise_2d``, MIT licence,
    https://github.com/pvigier/perlin-numpy), the routine DRAEM and the authors' code also copy, with the
    generator passed in so that every draw is reproducible; kept here (20 lines) rather than as a dependency:
    PyPI has only its 0.0.1 release, which draws from numpy's global random state."""
    delta = (res[0] / shape[0], res[1] / shape[1])
    d = (shape[0] // res[0], shape[1] // res[1])
    grid = np.mgrid[0 : res[0] : delta[0], 0 : res[1] : delta[1]].transpose(1, 2, 0) % 1
    angles = 2 * np.pi * rng.random((res[0] + 1, res[1] + 1))
    gradients = np.stack((np.cos(angles), np.sin(angles)), axis=-1)

    def tile(s0: slice, s1: slice) -> np.ndarray:
        return np.repeat(np.repeat(gradients[s0, s1], d[0], axis=0), d[1], axis=1)

    def dot(grad: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
        g = grid[: shape[0], : shape[1]]
        return ((np.stack((g[..., 0] + shift[0], g[..., 1] + shift[1]), axis=-1)) * grad).sum(axis=-1)

    n00 = dot(tile(slice(0, -1), slice(0, -1)), (0, 0))
    n10 = dot(tile(slice(1, None), slice(0, -1)), (-1, 0))
    n01 = dot(tile(slice(0, -1), slice(1, None)), (0, -1))
    n11 = dot(tile(slice(1, None), slice(1, None)), (-1, -1))
    t = _fade(grid[: shape[0], : shape[1]])
    n0 = n00 * (1 - t[..., 0]) + t[..., 0] * n10
    n1 = n01 * (1 - t[..., 0]) + t[..., 0] * n11
    return np.sqrt(2) * ((1 - t[..., 1]) * n0 + t[..., 1] * n1)


def perlin_mask(size: int, rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Binary Perlin mask (S, S) and the rotated noise it was cut from (scales 2**k per axis)."""
    sx, sy = (2 ** rng.integers(cfg.min_perlin_scale, cfg.max_perlin_scale, size=2)).tolist()
    period = max(sx, sy, 32)
    side = int(np.ceil(size / period) * period)  # divisible by both scales
    noise = perlin_noise((side, side), (sx, sy), rng)[:size, :size].astype(np.float32)
    angle = rng.uniform(-ROTATION_DEG, ROTATION_DEG)
    rot = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    noise = cv2.warpAffine(noise, rot, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return noise > cfg.threshold, noise


SCRATCH_LENGTH = (0.05, 0.3)  # of the side S
SCRATCH_WIDTH = (1, 3)  # px
SPOT_RADIUS = (0.01, 0.06)  # of the side S
DARKEN_GAIN, BRIGHTEN_GAIN = (0.2, 0.7), (1.4, 2.5)
SHAPES = ("perlin", "scratch", "spot")
FILLS = ("texture", "cutpaste", "intensity")


def scratch_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """One to three thin random polylines (cuts, scratches), (S, S) bool."""
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        length = rng.uniform(*SCRATCH_LENGTH) * size
        points = [rng.uniform(0, size, 2)]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(1, 4))):
            angle += rng.uniform(-0.8, 0.8)
            step = length / 3
            points.append(points[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
        pts = np.round(np.array(points)).astype(np.int32)[None]
        cv2.polylines(canvas, pts, False, 1, int(rng.integers(SCRATCH_WIDTH[0], SCRATCH_WIDTH[1] + 1)))
    return canvas > 0


def spot_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """One to three small ellipses (holes, drops, specks), (S, S) bool."""
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        axes = np.maximum(1, np.round(rng.uniform(*SPOT_RADIUS, size=2) * size)).astype(int)
        centre = np.round(rng.uniform(0, size, 2)).astype(int)
        cv2.ellipse(canvas, tuple(centre.tolist()), tuple(axes.tolist()), rng.uniform(0, 180), 0, 360, 1, -1)
    return canvas > 0


def place_in_region(mask: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shifts a small mask so that its centre lies on a random pixel of ``region`` (then keeps the overlap).

    Scratches and spots are drawn anywhere; without this most would miss a small object.
    """
    ys, xs = np.nonzero(region)
    my, mx = np.nonzero(mask)
    if len(ys) == 0 or len(my) == 0:
        return mask & region
    k = int(rng.integers(len(ys)))
    dy, dx = int(ys[k] - round(my.mean())), int(xs[k] - round(mx.mean()))
    shifted = np.zeros_like(mask)
    size_y, size_x = mask.shape
    ty, tx = my + dy, mx + dx
    keep = (ty >= 0) & (ty < size_y) & (tx >= 0) & (tx < size_x)
    shifted[ty[keep], tx[keep]] = True
    return shifted & region


def match_intensity(tex: np.ndarray, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rescales a texture to the image's mean and spread under the mask, times a random contrast."""
    inside = rgb[mask]
    mean, std = inside.mean(axis=0), inside.std(axis=0) + 1e-3
    t_mean, t_std = tex[mask].mean(axis=0), tex[mask].std(axis=0) + 1e-3
    gain = rng.uniform(1.0, 4.0)
    shift = rng.uniform(-2.0, 2.0) * std
    return np.clip((tex - t_mean) / t_std * std * gain + mean + shift, 0.0, 1.0).astype(np.float32)


def cut_paste(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image itself shifted by a random offset, maybe flipped and colour-jittered (the pasted content)."""
    size = rgb.shape[0]
    dy, dx = (rng.integers(size // 8, size - size // 8, size=2)).tolist()
    src = np.roll(rgb, (dy, dx), axis=(0, 1))
    if rng.random() < 0.5:
        src = src[::-1]
    if rng.random() < 0.5:
        src = src[:, ::-1]
    src = src * rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    return np.clip(np.ascontiguousarray(src), 0.0, 1.0).astype(np.float32)


def intensity_change(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The surface darkened (holes, cuts) or brightened (contamination), with a little grain."""
    gain = rng.uniform(*DARKEN_GAIN) if rng.random() < 0.6 else rng.uniform(*BRIGHTEN_GAIN)
    grain = rng.normal(0.0, 0.02, rgb.shape[:2])[..., None].astype(np.float32)
    return np.clip(rgb * gain + grain, 0.0, 1.0).astype(np.float32)


class TextureSource:
    """Anomaly textures: images from a folder (e.g. DTD) when given, otherwise generated procedurally."""

    def __init__(self, texture_dir: str | Path | None = None) -> None:
        self.files: list[Path] = []
        if texture_dir is not None:
            root = Path(texture_dir)
            self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in TEXTURE_EXTENSIONS)
            if not self.files:
                raise ValueError(f"no texture images ({', '.join(TEXTURE_EXTENSIONS)}) under {root}")

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """A (S, S, 3) float32 texture in [0, 1], randomly augmented."""
        if self.files:
            bgr = cv2.imread(str(self.files[rng.integers(len(self.files))]), cv2.IMREAD_COLOR)
            tex = cv2.resize(bgr[..., ::-1], (size, size)).astype(np.float32) / 255.0
        else:
            tex = procedural_texture(size, rng)
        return augment_texture(tex, rng)


def procedural_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Random colour noise, stripes, checks or speckles, (S, S, 3) float32 in [0, 1]."""
    side = int(np.ceil(size / 32) * 32)
    kind = rng.integers(4)
    colours = rng.random((2, 3)).astype(np.float32)
    if kind == 0:  # multi-scale coloured Perlin noise
        res = int(2 ** rng.integers(1, 5))
        t = np.stack([perlin_noise((side, side), (res, res), rng) for _ in range(3)], -1)[:size, :size]
        return np.clip(0.5 + 0.5 * t, 0, 1).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(3, 16)
    if kind == 1:  # stripes at a random angle
        theta = rng.uniform(0, np.pi)
        w = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0)[..., None]
    elif kind == 2:  # checks
        w = (((xx // period) + (yy // period)) % 2 == 0)[..., None]
    else:  # speckles
        w = (rng.random((size, size)) < rng.uniform(0.05, 0.5))[..., None]
    return np.where(w, colours[0], colours[1]).astype(np.float32)


def augment_texture(tex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Three of DRAEM's photometric augmentations, chosen at random (gamma, brightness, hue, solarise,
    posterise, invert, rotation)."""
    ops = rng.choice(7, size=3, replace=False)
    for op in ops:
        if op == 0:
            tex = tex ** rng.uniform(0.5, 2.0, size=3).astype(np.float32)
        elif op == 1:
            tex = tex * rng.uniform(0.8, 1.2) + rng.uniform(-0.12, 0.12)
        elif op == 2:
            tex = tex[..., rng.permutation(3)]
        elif op == 3:
            t = rng.uniform(0.125, 0.5)
            tex = np.where(tex > t, 1.0 - tex, tex)
        elif op == 4:
            levels = int(rng.integers(2, 8))
            tex = np.floor(tex * levels) / levels
        elif op == 5:
            tex = 1.0 - tex
        else:
            s = tex.shape[0]
            rot = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-45, 45), 1.0)
            tex = cv2.warpAffine(np.ascontiguousarray(tex), rot, (s, s), borderMode=cv2.BORDER_REFLECT)
        tex = np.clip(tex, 0.0, 1.0).astype(np.float32)  # keep every step in [0, 1] (gamma of < 0 is NaN)
    return tex


def placement_region(sample: Any, cfg: SynthConfig) -> np.ndarray | None:
    """(S, S) bool where a sample's anomalies may go: its depth foreground inside the image frame; without
    depth and with ``cfg.rgb_foreground``, the object found in RGB; None means anywhere."""
    region = sample.region
    if sample.foreground is None and cfg.rgb_foreground:
        valid = sample.frame.valid if sample.frame is not None else None
        found = rgb_foreground(sample.rgb, valid)
        region = found if found is not None else region
    return region


class AnomalySynthesizer:
    """Turns a clean (rgb, depth, foreground) triple into a training pair (about half stay clean)."""

    def __init__(self, cfg: SynthConfig | None = None) -> None:
        """Depth anomalies are ``cfg.depth_amplitude`` units of the depth input (of a "metric" model's fixed scale,
        or of the image's highest point)."""
        self.cfg = cfg or SynthConfig()
        self.textures = TextureSource(self.cfg.texture_dir)

    def __call__(
        self,
        rgb: np.ndarray,
        depth: np.ndarray | None,
        foreground: np.ndarray | None,
        rng: np.random.Generator,
        force: bool | None = None,
    ) -> Synthetic:
        """Args: rgb (S,S,3) float32 [0,1]; depth (S,S) or None; foreground (S,S) bool or None (whole image);
        ``force`` True/False overrides the clean/anomalous coin."""
        size = rgb.shape[0]
        zeros = np.zeros(rgb.shape[:2], np.float32)
        anomalous = rng.random() < self.cfg.anomaly_probability if force is None else force
        if not anomalous:
            return Synthetic(rgb, depth, zeros, zeros, 0)
        mask = self._mask(size, foreground, rng)
        if not mask.any():
            return Synthetic(rgb, depth, zeros, zeros, 0)
        kind = "rgb" if depth is None else rng.choice(["both", "rgb", "depth"], p=self._kind_p())
        m = mask.astype(np.float32)
        aug_rgb, aug_depth, mask_rgb = rgb, depth, m
        if kind in ("both", "rgb"):
            fill = self._fill(rgb, mask, rng)
            beta = rng.uniform(0.0, self.cfg.beta_max)
            m3 = m[..., None]
            aug_rgb = (rgb * (1 - m3) + (1 - beta) * fill * m3 + beta * rgb * m3).astype(np.float32)
        if kind in ("both", "depth"):
            aug_depth = self._displace(depth, self._profile(mask), rng)
        if kind == "depth":
            mask_rgb = zeros
        return Synthetic(aug_rgb, aug_depth, m, mask_rgb, 1, kind=str(kind))

    def _displace(self, depth: np.ndarray, bump: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A dent or bump of profile ``bump`` (0..1) added to the depth input."""
        lo, hi = self.cfg.depth_amplitude
        amplitude = rng.uniform(lo, hi) * rng.choice([-1.0, 1.0])
        return np.clip(depth + amplitude * bump, 0.0, DEPTH_MAX).astype(np.float32)

    @staticmethod
    def _profile(mask: np.ndarray) -> np.ndarray:
        """The displacement's (S, S) float32 profile in [0, 1] over ``mask``: a flat step whose rim is softened by
        DEPTH_EDGE_SIGMA px (a chip or a pressed-in plateau)."""
        m = mask.astype(np.float32)
        return cv2.GaussianBlur(m, (0, 0), DEPTH_EDGE_SIGMA) * m

    def _mask(self, size: int, foreground: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """The anomaly's (S, S) bool mask: a Perlin blob, scratches or spots, on the foreground."""
        shape = SHAPES[_pick(self.cfg.shape_weights, rng)]
        if shape == "perlin":
            mask, _ = perlin_mask(size, rng, self.cfg)
            return mask if foreground is None else mask & foreground
        mask = scratch_mask(size, rng) if shape == "scratch" else spot_mask(size, rng)
        return mask if foreground is None else place_in_region(mask, foreground, rng)

    def _fill(self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """What the RGB image shows inside the mask before blending, (S, S, 3) float32."""
        fill = FILLS[_pick(self.cfg.fill_weights, rng)]
        if fill == "cutpaste":
            return cut_paste(rgb, rng)
        if fill == "intensity":
            return intensity_change(rgb, rng)
        tex = self.textures.sample(rgb.shape[0], rng)
        return match_intensity(tex, rgb, mask, rng) if self.cfg.match_intensity else tex

    def _kind_p(self) -> np.ndarray:
        return _normalised(self.cfg.kind_weights)


def _pick(weights: tuple[float, ...], rng: np.random.Generator) -> int:
    """An index drawn by weight; a single non-zero weight draws nothing (seeded recipes stay as they were)."""
    nonzero = [i for i, w in enumerate(weights) if w > 0]
    return nonzero[0] if len(nonzero) == 1 else int(rng.choice(len(weights), p=_normalised(weights)))


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()
