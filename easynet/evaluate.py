"""Evaluation of a checkpoint over a split, and calibration on the validation split (never on test).

The calibration rule is CALIBRATION_RULE below; its text is stored in every calibrated checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from easynet.checkpoint import Calibration, HeadCalibration
from easynet.config import GATE_RULES, ModelConfig, SynthConfig
from easynet.gate import MODES, entropies, prefers_fused
from easynet.metrics import compute_metrics
from easynet.model import EasyNet
from easynet.predict import heatmap_scale, image_scores, position_normalise, valid_masks
from easynet.synth import AnomalySynthesizer, placement_region

# shown to users and stored in each checkpoint: a constant, not parsed from a docstring (empty under -OO)
CALIBRATION_RULE = """\
* The calibration set is every validation image once clean and CALIBRATION_VARIANTS times with a
  synthetic anomaly (the training recipe, fixed seed): validation only, the test split is never read.
* Per head (RGB, fused): the image threshold maximises Youden's J (true-positive rate minus false-positive
  rate) between clean and synthetic images, half-way between two scores; F1 was dropped because it ignores
  true negatives and, with three synthetic anomalies per clean image, flagged most good parts.
  The heat-map scale runs from the 99.5th percentile of clean pixels (0) to the median image score of the
  synthetic images (1).
* Per head, position-wise normalisation: the clean validation maps give a mean and standard deviation per
  pixel and a map becomes (p - mean) / (std + eps); it is kept (with the best eps of NORM_EPS) only when it
  raises the head's calibration-set I-AUROC by NORM_MIN_GAIN, each image scored against the other images'
  statistics (leave one out). Thresholds and heat-map scales are then fitted on the normalised maps.
* Scores from the two heads are compared as score / threshold of their head (``normalized``), so that
  the control gate can mix heads per image. The entropy rule's alpha is the value that maximises its
  control I-AUROC on the calibration set (ties: the alpha closest to 0); the score rule (the head whose
  score / threshold is larger) has no parameter of its own. Both rules' I-AUROC are recorded."""
CALIBRATION_VARIANTS = 3
CALIBRATION_SEED = 1234
DEPTH_BLIND_AUROC = 0.6  # fused head on depth-only validation anomalies below this: depth unused (a note)
PIXEL_LOW_QUANTILE = 99.5
# position-wise normalisation (fit_position_norm): floors added to the clean maps' std (probability units),
# the I-AUROC it must gain over raw maps on the calibration set to be used, and the clean images it needs: a
# per-pixel spread from fewer is noise (with 12, gasket's RGB head gained 0.02 on validation and lost 0.03 on test)
NORM_EPS = (0.01, 0.02, 0.05)
NORM_MIN_GAIN = 0.005
NORM_MIN_IMAGES = 20
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
    probs_r, probs_f, h_r, h_f = [], [], [], []
    model.eval()
    for start in range(0, n, BATCH_SIZE):
        chunk = [items[i] for i in range(start, min(n, start + BATCH_SIZE))]
        rgb_t, depth_t = batch_inputs(cfg, chunk, device)
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            out = model(rgb_t, depth_t)
            probs_r.append(torch.softmax(out.logits_rgb.float(), 1)[:, 1].cpu())
            nan = torch.full((len(chunk),), float("nan"))
            if out.logits_fused is not None:
                probs_f.append(torch.softmax(out.logits_fused.float(), 1)[:, 1].cpu())
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
    )
    heads.score_rgb = heads.score(prob_rgb)
    heads.score_fused = None if prob_fused is None else heads.score(prob_fused)
    return heads if cal is None else heads.normalised(cal)


def _youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The image threshold that maximises Youden's J = TPR - FPR (ties: the lower, more sensitive one), placed
    half-way to the next lower score so that images scoring like the calibration set's land on the right side."""
    values = np.unique(scores)[::-1]  # candidate thresholds, high to low
    pos, neg = max(int((labels == 1).sum()), 1), max(int((labels == 0).sum()), 1)
    best, best_j = 0, -np.inf
    for i, t in enumerate(values):
        pred = scores >= t
        j = (pred & (labels == 1)).sum() / pos - (pred & (labels == 0)).sum() / neg
        if j >= best_j - 1e-12:
            best, best_j = i, j
    below = values[best + 1] if best + 1 < len(values) else values[best]
    return float((values[best] + below) / 2)


def _head_calibration(labels: np.ndarray, scores: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """A head's threshold and heat-map scale (HeadCalibration fields) from its calibration-set scores."""
    clean = probs[labels == 0]
    low = float(np.percentile(clean, PIXEL_LOW_QUANTILE)) if clean.size else 0.0
    high = float(np.median(scores[labels == 1])) if (labels == 1).any() else 1.0
    return {
        "threshold": max(_youden_threshold(labels, scores), 1e-6),
        "pixel_low": low,
        "pixel_high": max(high, low + 1e-3),
    }


@dataclass
class PositionNorm:
    """The outcome of fit_position_norm: the maps to store (None: no normalisation), the leave-one-out
    normalised calibration maps behind the choice, and the I-AUROC per candidate ("off" or eps)."""

    mean: torch.Tensor | None
    scale: torch.Tensor | None
    held_out: np.ndarray | None
    table: dict[str, float]


def fit_position_norm(
    labels: np.ndarray, source: np.ndarray, maps: np.ndarray, score: Callable[[np.ndarray], np.ndarray]
) -> PositionNorm:
    """Whether to normalise a head's maps position by position, decided on the calibration set.

    The clean images' maps give a mean and a standard deviation per pixel; a map becomes
    (p - mean) / (std + eps). Each calibration image is scored against the statistics of the other source
    images (leave one out, so that no image is normalised by itself), for every eps in NORM_EPS; the best
    eps is kept when its I-AUROC beats the raw maps' by NORM_MIN_GAIN, else none is. ``source`` (N,) names
    the validation image each calibration image was made from; the stored maps are mean and std + eps over
    all clean images.
    """
    clean = np.flatnonzero(labels == 0)
    table = {"off": _auroc(labels, score(maps))}
    if len(clean) < NORM_MIN_IMAGES or len(set(labels.tolist())) < 2:
        return PositionNorm(None, None, None, table)
    p = torch.from_numpy(maps).double()
    total, total_sq = p[clean].sum(0), (p[clean] ** 2).sum(0)
    loo_mean, loo_std = torch.empty_like(p), torch.empty_like(p)
    for src in np.unique(source):
        own = clean[source[clean] == src]
        n = len(clean) - len(own)
        mean = (total - p[own].sum(0)) / n
        std = ((total_sq - (p[own] ** 2).sum(0)) / n - mean**2).clamp_min(0).sqrt()
        rows = torch.from_numpy(np.flatnonzero(source == src))
        loo_mean[rows], loo_std[rows] = mean, std
    best, best_auc = None, table["off"] + NORM_MIN_GAIN
    for eps in NORM_EPS:
        held_out = ((p - loo_mean) / (loo_std + eps)).float().numpy()
        table[str(eps)] = auc = _auroc(labels, score(held_out))
        if auc >= best_auc:
            best, best_auc = (eps, held_out), auc
    if best is None:
        return PositionNorm(None, None, None, table)
    mean = total / len(clean)
    std = (total_sq / len(clean) - mean**2).clamp_min(0).sqrt()
    return PositionNorm(mean.float(), (std + best[0]).float(), best[1], table)


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
    rule = rule or heads.gate_rule
    if heads.prob_fused is None or mode == "close":
        used = np.zeros(n, dtype=bool)
    elif mode == "open":
        used = np.ones(n, dtype=bool)
    elif official:
        used = heads.entropy_fused >= heads.entropy_rgb + cal.alpha
    elif rule == "score":  # the more alarmed head, each score on its own threshold's scale (ties: RGB)
        used = prefers_fused(heads.score_rgb / cal.rgb.threshold, _safe(heads.score_fused, n) / cal.fused.threshold)
    else:
        used = heads.entropy_fused > heads.entropy_rgb + cal.alpha
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


def calibration_set(
    model: EasyNet, validation: Sequence[Any], synth: SynthConfig | None = None
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The calibration set: (items, labels (N,) 0 clean / 1 synthetic, source (N,) the validation index each
    item was made from): every validation image once clean and with up to CALIBRATION_VARIANTS synthetic
    anomalies of the training recipe (fixed seed)."""
    synth = synth or SynthConfig()
    synthesizer = AnomalySynthesizer(synth, model.cfg.metric_scale)
    items, labels, source = [], [], []
    for i in range(len(validation)):
        s = validation[i]
        depth = s.depth if model.cfg.has_depth else None
        items.append(s)
        labels.append(0)
        source.append(i)
        region = placement_region(s, synth)
        for v in range(CALIBRATION_VARIANTS):
            rng = np.random.default_rng((CALIBRATION_SEED, i, v))
            syn = synthesizer(s.rgb, depth, region, rng, force=True)
            syn.frame = s.frame
            if syn.label:
                items.append(syn)
                labels.append(1)
                source.append(i)
    return items, np.asarray(labels), np.asarray(source)


def calibrate(
    model: EasyNet,
    validation: Sequence[Any],
    device: torch.device,
    synth: SynthConfig | None = None,
    progress: Progress | None = None,
    position_norm: bool = True,
) -> Calibration:
    """Fit alpha, thresholds and heat-map scales on validation images and their synthetic anomalies, and (with
    ``position_norm``, unless the checkpoint uses the authors' score rule) each head's position norm."""
    if len(validation) == 0:
        return Calibration(rule="no validation images: defaults")
    items, y, source = calibration_set(model, validation, synth)
    raw = run_heads(model, items, device, progress)
    cal = Calibration(rule=CALIBRATION_RULE)
    metrics: dict[str, Any] = {"n_images": int(len(y)), "n_synthetic": int(y.sum())}
    heads = raw
    for head, maps in (("rgb", raw.prob_rgb), ("fused", raw.prob_fused)):
        if maps is not None and position_norm and model.cfg.score_rule != "official":  # authors' rule stays
            fit = fit_position_norm(y, np.asarray(source), maps, raw.score)
            metrics[f"position_norm_{head}"] = fit.table
            if fit.mean is not None:
                h = cal.head(head == "fused")
                h.norm_mean, h.norm_scale = fit.mean, fit.scale
                # everything below is fitted on the leave-one-out maps: as a new image will be normalised
                name = "prob_fused" if head == "fused" else "prob_rgb"
                heads = dataclasses.replace(heads, **{name: fit.held_out, f"score_{head}": raw.score(fit.held_out)})
    cal.rgb = dataclasses.replace(cal.rgb, **_head_calibration(y, heads.score_rgb, heads.prob_rgb))
    if heads.prob_fused is not None:
        cal.fused = dataclasses.replace(cal.fused, **_head_calibration(y, heads.score_fused, heads.prob_fused))
        cal.alpha = fit_alpha(y, heads, cal)  # the entropy rule's (kept whatever the checkpoint's rule)
        for mode in MODES:
            metrics[f"i_auroc_{mode}"] = _auroc(y, gate_scores(heads, cal, mode)[0])
        metrics["gate_rule"] = heads.gate_rule
        for rule in GATE_RULES:  # both rules on the same set (the entropy rule's alpha was fitted on it)
            metrics[f"i_auroc_control_{rule}"] = _auroc(y, gate_scores(heads, cal, "control", rule)[0])
        fused = gate_scores(heads, cal, "control")[2]
        metrics["control_fused_fraction"] = round(float(np.mean(fused)), 4)
        # per kind of image: clean, anomaly in RGB only (colour), depth only (geometry), both: a gate that decides
        # sends geometry to the fused head and colour to the RGB head
        kinds = np.array(["good" if not label else getattr(item, "kind", "both") for item, label in zip(items, y)])
        metrics["control_fused_fraction_by_kind"] = {
            k: round(float(np.mean(fused[kinds == k])), 4)
            for k in ("good", "rgb", "depth", "both")
            if (kinds == k).any()
        }
        # per head and kind: clean vs that kind only. A fused head near 0.5 on "depth" never learned to use depth
        # (a training run can collapse so; benchmarks/metric_depth/README.md)
        metrics["i_auroc_by_kind"] = {
            head: {
                k: round(_auroc(y[(kinds == "good") | (kinds == k)], score[(kinds == "good") | (kinds == k)]), 4)
                for k in ("rgb", "depth", "both")
                if (kinds == k).any()
            }
            for head, score in (("rgb", heads.score_rgb), ("fused", heads.score_fused))
        }
        depth_only = metrics["i_auroc_by_kind"]["fused"].get("depth", float("nan"))
        if depth_only < DEPTH_BLIND_AUROC:
            metrics["depth_note"] = (
                f"the fused head finds depth-only synthetic anomalies on validation no better than chance "
                f"(I-AUROC {depth_only:.2f}): this run did not learn to use depth; train longer or with another seed"
            )
        by_entropy = gate_scores(heads, cal, "control", "entropy")[2]
        if by_entropy.all() or not by_entropy.any():  # an end of the search range: the entropies decided nothing
            head = "fused" if by_entropy.all() else "RGB"
            metrics["alpha_note"] = (
                f"alpha {cal.alpha:.4f} is at the end of its search range: the entropy rule sends every "
                f"validation image to the {head} head, so the entropies carry no signal here"
            )
    else:
        metrics["i_auroc_close"] = _auroc(y, heads.score_rgb / cal.rgb.threshold)
    cal.metrics = metrics
    return cal


def fit_alpha(labels: np.ndarray, heads: HeadOutputs, cal: Calibration) -> float:
    """The entropy rule's alpha: the value that maximises control's I-AUROC over ``labels`` given each head's
    threshold in ``cal`` (ties: the one closest to 0); candidates lie half-way between the images' entropy
    differences, beyond both ends, and 0."""
    diffs = np.sort(heads.entropy_fused - heads.entropy_rgb)
    candidates = np.concatenate([[diffs[0] - 1.0, diffs[-1] + 1.0], (diffs[1:] + diffs[:-1]) / 2, [0.0]])
    best = (-1.0, 0.0)
    trial = dataclasses.replace(cal)
    for a in candidates:
        trial.alpha = float(a)
        auc = _auroc(labels, gate_scores(heads, trial, "control", "entropy")[0])
        if auc > best[0] + 1e-9 or (abs(auc - best[0]) <= 1e-9 and abs(a) < abs(best[1])):
            best = (auc, float(a))
    return best[1]


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan")


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
