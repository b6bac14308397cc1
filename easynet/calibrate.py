"""Calibration on the validation split (never on test): thresholds, heat-map scales, the gate's alpha, the
position-wise normalisation of each head's map and the typical-part reference.

The rule is CALIBRATION_RULE below; its text is stored in every calibrated checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from easynet.checkpoint import Calibration
from easynet.config import GATE_RULES, SynthConfig
from easynet.evaluate import HeadOutputs, gate_scores, run_heads
from easynet.gate import MODES
from easynet.metrics import image_auroc
from easynet.model import EasyNet
from easynet.synth import AnomalySynthesizer, placement_region
from easynet.typical import TypicalReference, fit_reference

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
  score / threshold is larger) has no parameter of its own. Both rules' I-AUROC are recorded.
* The typical-part reference (how much a new picture looks like this model's part): a Gaussian per stream over the
  pooled merge features of clean training images; its limit is fitted on the clean validation images
  (easynet.typical.LIMIT_RULE)."""
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
REFERENCE_IMAGES = 100  # training images (evenly spaced) the typical-part reference is fitted on, with theirs

Progress = Callable[[int, int], None]


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


def head_calibration(labels: np.ndarray, scores: np.ndarray, probs: np.ndarray) -> dict[str, float]:
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
    table = {"off": image_auroc(labels, score(maps))}
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
        table[str(eps)] = auc = image_auroc(labels, score(held_out))
        if auc >= best_auc:
            best, best_auc = (eps, held_out), auc
    if best is None:
        return PositionNorm(None, None, None, table)
    mean = total / len(clean)
    std = (total_sq / len(clean) - mean**2).clamp_min(0).sqrt()
    return PositionNorm(mean.float(), (std + best[0]).float(), best[1], table)


def calibration_set(
    model: EasyNet, validation: Sequence[Any], synth: SynthConfig | None = None, defects: Sequence[Any] = ()
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The calibration set: (items, labels (N,) 0 clean / 1 anomalous, source (N,) the image index each item was
    made from): every validation image once clean and with up to CALIBRATION_VARIANTS synthetic anomalies of the
    training recipe (fixed seed), then ``defects``, real labelled defect images (a person's verdicts on the
    user's own parts), each its own source."""
    synth = synth or SynthConfig()
    synthesizer = AnomalySynthesizer(synth)
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
    for k, defect in enumerate(defects):
        items.append(defect)
        labels.append(1)
        source.append(len(validation) + k)
    return items, np.asarray(labels), np.asarray(source)


def calibrate(
    model: EasyNet,
    validation: Sequence[Any],
    device: torch.device,
    synth: SynthConfig | None = None,
    progress: Progress | None = None,
    position_norm: bool = True,
    train: Sequence[Any] | None = None,
    defects: Sequence[Any] = (),
) -> Calibration:
    """Fit alpha, thresholds and heat-map scales on validation images and their synthetic anomalies (and real
    labelled ``defects`` where the user has them), and (with ``position_norm``, unless the checkpoint uses the
    authors' score rule) each head's position norm. With the ``train`` split, also the typical-part reference
    (easynet.typical): Gaussians on clean training images, its limit from the clean validation images."""
    if len(validation) == 0:
        return Calibration(rule="no validation images: defaults")
    items, y, source = calibration_set(model, validation, synth, defects)
    raw = run_heads(model, items, device, progress)
    cal = Calibration(rule=CALIBRATION_RULE)
    if train is not None and len(train) > 1:
        cal.reference = fit_typical_reference(model, train, synth, raw, device)
    metrics: dict[str, Any] = {"n_images": int(len(y)), "n_synthetic": int(y.sum()) - len(defects)}
    if defects:
        metrics["n_real_defects"] = len(defects)
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
    cal.rgb = dataclasses.replace(cal.rgb, **head_calibration(y, heads.score_rgb, heads.prob_rgb))
    if heads.prob_fused is not None:
        cal.fused = dataclasses.replace(cal.fused, **head_calibration(y, heads.score_fused, heads.prob_fused))
        cal.alpha = fit_alpha(y, heads, cal)  # the entropy rule's (kept whatever the checkpoint's rule)
        for mode in MODES:
            metrics[f"i_auroc_{mode}"] = image_auroc(y, gate_scores(heads, cal, mode)[0])
        metrics["gate_rule"] = heads.gate_rule
        for rule in GATE_RULES:  # both rules on the same set (the entropy rule's alpha was fitted on it)
            metrics[f"i_auroc_control_{rule}"] = image_auroc(y, gate_scores(heads, cal, "control", rule)[0])
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
        # (a training run can collapse so: "depth-blind", research/RECIPE.md)
        metrics["i_auroc_by_kind"] = {
            head: {
                k: round(image_auroc(y[(kinds == "good") | (kinds == k)], score[(kinds == "good") | (kinds == k)]), 4)
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
        metrics["i_auroc_close"] = image_auroc(y, heads.score_rgb / cal.rgb.threshold)
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
        auc = image_auroc(labels, gate_scores(heads, trial, "control", "entropy")[0])
        if auc > best[0] + 1e-9 or (abs(auc - best[0]) <= 1e-9 and abs(a) < abs(best[1])):
            best = (auc, float(a))
    return best[1]


def fit_typical_reference(
    model: EasyNet,
    train: Sequence[Any],
    synth: SynthConfig | None,
    validation: HeadOutputs,
    device: torch.device,
) -> TypicalReference:
    """The typical-part reference (easynet.typical): Gaussians on the pooled features of up to REFERENCE_IMAGES
    training images (evenly spaced) and their synthetic anomalies, limits from ``validation`` (the outputs of the
    calibration set: validation images and theirs)."""
    picks = np.unique(np.linspace(0, len(train) - 1, min(len(train), REFERENCE_IMAGES)).round().astype(int))
    items, _, _ = calibration_set(model, [train[int(i)] for i in picks], synth)
    seen = run_heads(model, items, device)
    return fit_reference(seen.pooled_rgb, seen.pooled_depth, validation.pooled_rgb, validation.pooled_depth)


def typical_reference(
    model: EasyNet, train: Sequence[Any], validation: Sequence[Any], device: torch.device, synth: SynthConfig | None
) -> TypicalReference:
    """The typical-part reference alone (thresholds and the rest of a calibration untouched), for a checkpoint
    calibrated before references existed."""
    items, _, _ = calibration_set(model, validation, synth)
    return fit_typical_reference(model, train, synth, run_heads(model, items, device), device)
