"""Evaluation of a checkpoint over a split: both heads' maps and scores for every image (``run_heads``), the gate
applied per mode (``gate_scores``) and the metrics (``evaluate``). Calibration is easynet.calibrate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from easynet.checkpoint import Calibration, HeadCalibration
from easynet.config import ModelConfig
from easynet.gate import MODES, entropies, use_fused
from easynet.metrics import compute_metrics
from easynet.model import EasyNet
from easynet.scoring import heatmap_scale, image_scores, position_normalise, valid_masks

BATCH_SIZE = 8

Progress = Callable[[int, int], None]


@dataclass
class HeadOutputs:
    """Per-image outputs of both heads over a list of samples."""

    prob_rgb: np.ndarray  # (N, S, S) the head's score maps (probabilities, position-normalised when calibrated so)
    prob_fused: np.ndarray | None  # (N, S, S)
    score_rgb: np.ndarray  # (N,)
    score_fused: np.ndarray | None
    entropy_rgb: np.ndarray  # (N,) nan without depth
    entropy_fused: np.ndarray
    score_rule: str = "calibrated"  # the checkpoint's ModelConfig.score_rule (see gate_scores)
    valid: torch.Tensor | None = None  # (N, S, S) bool image pixels (letterbox), for re-scoring
    gate_rule: str = "entropy"  # the checkpoint's ModelConfig.gate_rule (see gate_scores)
    pooled_rgb: np.ndarray | None = None  # (N, L * hw) pooled RGB merge features (the typical-part reference)
    pooled_depth: np.ndarray | None = None  # (N, L * hw) the same of the depth stream

    def score(self, maps: np.ndarray) -> np.ndarray:
        """(N, S, S) maps of these images -> (N,) image scores by the checkpoint's rule."""
        t = torch.from_numpy(np.ascontiguousarray(maps))
        return image_scores(t, maps.shape[-1], self.valid, self.score_rule == "official").numpy()

    def normalised(self, cal: Calibration) -> HeadOutputs:
        """These outputs with each head's maps position-normalised by its calibration and scored again."""
        rgb = _normalise(self.prob_rgb, cal.rgb)
        fused = None if self.prob_fused is None else _normalise(self.prob_fused, cal.fused)
        return dataclasses.replace(
            self,
            prob_rgb=rgb,
            prob_fused=fused,
            score_rgb=self.score(rgb) if cal.rgb.normalised else self.score_rgb,
            score_fused=self.score(fused) if fused is not None and cal.fused.normalised else self.score_fused,
        )


def _normalise(maps: np.ndarray, head: HeadCalibration) -> np.ndarray:
    return maps if not head.normalised else position_normalise(torch.from_numpy(maps), head).numpy()


def batch_inputs(cfg: ModelConfig, chunk: Sequence[Any], device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The model's (B, 3, S, S) RGB and (B, 1, S, S) depth inputs for items with ``rgb`` and ``depth`` attributes,
    in the checkpoint's channel order; depth is None for an RGB-only model or when an item lacks it."""
    rgb = np.stack([c.rgb[..., ::-1] if cfg.input_order == "bgr" else c.rgb for c in chunk])
    rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).float().to(device)
    depth_t = None
    if cfg.has_depth and all(c.depth is not None for c in chunk):
        depth_t = torch.from_numpy(np.stack([c.depth for c in chunk])[:, None]).float().to(device)
    return rgb_t, depth_t


def run_heads(
    model: EasyNet,
    items: Sequence[Any],
    device: torch.device,
    progress: Progress | None = None,
    cal: Calibration | None = None,
    precision: str = "fp32",
) -> HeadOutputs:
    """Full forward (both heads) over items with ``rgb``, ``depth`` attributes (Sample or Synthetic); with
    ``cal``, each head's maps are position-normalised as its calibration says before they are scored.
    ``precision`` "bf16" runs the network under bf16 autocast (probabilities and entropies in fp32), as the
    bf16 runner does; it is used as given (emulated where the device lacks native bf16)."""
    cfg, n = model.cfg, len(items)
    probs_r, probs_f, h_r, h_f, pooled_r, pooled_d = [], [], [], [], [], []
    model.eval()
    for start in range(0, n, BATCH_SIZE):
        chunk = [items[i] for i in range(start, min(n, start + BATCH_SIZE))]
        rgb_t, depth_t = batch_inputs(cfg, chunk, device)
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            out = model(rgb_t, depth_t)
            probs_r.append(torch.softmax(out.logits_rgb.float(), 1)[:, 1].cpu())
            pooled_r.append(out.pooled_rgb.float().cpu())
            nan = torch.full((len(chunk),), float("nan"))
            if out.logits_fused is not None:
                probs_f.append(torch.softmax(out.logits_fused.float(), 1)[:, 1].cpu())
                pooled_d.append(out.pooled_fused[:, out.pooled_rgb.shape[1] :].float().cpu())
                pooled = [t.float() if t is not None else None for t in (out.pooled_rgb, out.pooled_fused)]
                attn = [t.float() if t is not None else None for t in (out.attn_rgb, out.attn_fused)]
                hr, hf = entropies(cfg.gate_scoring, *pooled, *attn)
                h_r.append(hr.cpu())
                h_f.append(hf.cpu())
            else:
                h_r.append(nan)
                h_f.append(nan)
        if progress is not None:
            progress(min(n, start + BATCH_SIZE), n)
    prob_rgb = torch.cat(probs_r).numpy()
    prob_fused = torch.cat(probs_f).numpy() if len(probs_f) == len(probs_r) and probs_f else None
    heads = HeadOutputs(
        prob_rgb,
        prob_fused,
        np.zeros(n),
        None,
        torch.cat(h_r).numpy(),
        torch.cat(h_f).numpy(),
        cfg.score_rule,
        valid_masks([items[i] for i in range(n)]),
        cfg.gate_rule,
        torch.cat(pooled_r).numpy(),
        torch.cat(pooled_d).numpy() if prob_fused is not None else None,
    )
    heads.score_rgb = heads.score(prob_rgb)
    heads.score_fused = None if prob_fused is None else heads.score(prob_fused)
    return heads if cal is None else heads.normalised(cal)


def gate_scores(
    heads: HeadOutputs, cal: Calibration, mode: str, rule: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised image scores, calibrated maps, used_fused) of every image under a gate mode; ``rule`` is
    how control picks a head (config.GATE_RULES; default: the checkpoint's, ``heads.gate_rule``).

    With the authors' score rule (``heads.score_rule == "official"``) the gate opens on ``>=`` and the scores
    and maps are the raw probabilities of the head chosen per image, as in their test.py.
    """
    n = len(heads.score_rgb)
    official = heads.score_rule == "official"
    rule = "entropy" if official else rule or heads.gate_rule
    used = use_fused(
        "close" if heads.prob_fused is None else mode,
        heads.entropy_rgb,
        heads.entropy_fused,
        cal.alpha,
        rule=rule,
        inclusive=official,
        ratio_rgb=heads.score_rgb / cal.rgb.threshold,
        ratio_fused=_safe(heads.score_fused, n) / cal.fused.threshold,
    )
    if official:
        scores = np.where(used, _safe(heads.score_fused, n), heads.score_rgb)
        maps = (
            heads.prob_rgb
            if heads.prob_fused is None
            else np.where(used[:, None, None], heads.prob_fused, heads.prob_rgb)
        )
        return scores, maps, used
    scores = np.where(used, _safe(heads.score_fused, n) / cal.fused.threshold, heads.score_rgb / cal.rgb.threshold)
    maps = np.stack(
        [
            heatmap_scale(heads.prob_fused[i], cal.fused, False)
            if used[i]
            else heatmap_scale(heads.prob_rgb[i], cal.rgb, False)
            for i in range(n)
        ]
    )
    return scores, maps, used


def _common_image_region(samples: Sequence[Any]) -> tuple[slice, slice]:
    """Pixel metrics leave padding out (letterbox, object): the image rectangle when every sample shares one."""
    frames = {getattr(s, "frame", None) for s in samples}
    frame = frames.pop() if len(frames) == 1 else None
    if frame is None or not frame.pads:
        return slice(None), slice(None)
    return frame.slices


def _safe(a: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n) if a is None else a


def evaluate(
    model: EasyNet,
    cal: Calibration,
    test: Sequence[Any],
    device: torch.device,
    gates: Sequence[str] = MODES,
    progress: Progress | None = None,
    precision: str = "fp32",
) -> tuple[dict[str, dict[str, Any]], HeadOutputs]:
    """Metrics per requested gate mode over a test split: ({mode: `Metrics.to_dict()`}, head outputs); the
    "control" entry adds "fused_fraction". ``precision``: see ``run_heads``."""
    heads = run_heads(model, test, device, progress, cal, precision)
    samples = [test[i] for i in range(len(test))]
    labels = np.asarray([s.label for s in samples])
    masks = np.stack([s.mask for s in samples])
    defects = [s.defect for s in samples]
    rows, cols = _common_image_region(samples)
    result: dict[str, dict[str, Any]] = {}
    for mode in gates:
        scores, maps, used = gate_scores(heads, cal, mode)
        m = compute_metrics(labels, scores, masks[:, rows, cols], maps[:, rows, cols], defects).to_dict()
        if mode == "control":
            m["fused_fraction"] = float(used.mean())
        result[mode] = m
    return result, heads
