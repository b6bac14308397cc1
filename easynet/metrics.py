"""Anomaly detection metrics: image/pixel AUROC and AP, AUPRO (MVTec 3D-AD definition), per-defect AUROC.

Single-class inputs (only good or only anomalous) give nan instead of an error.
"""

from __future__ import annotations

from bisect import bisect
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

FPR_LIMIT = 0.3  # AUPRO integration limit
NUM_THRESHOLDS = 100  # peers use 100; the official README example uses 512
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
GOOD = "good"


def _binary(labels: np.ndarray) -> np.ndarray:
    return (np.asarray(labels) > 0).ravel()


def _score(metric, labels, scores) -> float:
    y = _binary(labels)
    if y.all() or not y.any():
        return float("nan")
    return float(metric(y, np.asarray(scores, dtype=np.float64).ravel()))


def image_auroc(labels, scores) -> float:
    """ROC AUC of image scores against image labels (nan with one class only)."""
    return _score(roc_auc_score, labels, scores)


def image_ap(labels, scores) -> float:
    """Average precision of image scores (nan with one class only)."""
    return _score(average_precision_score, labels, scores)


def bootstrap_image_auroc(labels, scores, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """I-AUROC over stratified bootstrap resamples: good and anomalous images are each drawn with replacement
    within their group (so every resample keeps the split's counts). Returns the mean and the 5-95 % interval;
    the spread says how far a small test set's single figure can be trusted."""
    y = _binary(labels)
    s = np.asarray(scores, dtype=np.float64).ravel()
    good, bad = np.flatnonzero(~y), np.flatnonzero(y)
    if not len(good) or not len(bad):
        return {"mean": float("nan"), "p5": float("nan"), "p95": float("nan")}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = np.concatenate([rng.choice(good, len(good)), rng.choice(bad, len(bad))])
        values.append(roc_auc_score(y[pick], s[pick]))
    lo, hi = np.percentile(values, [5, 95])
    return {"mean": float(np.mean(values)), "p5": float(lo), "p95": float(hi)}


def pixel_auroc(masks, maps) -> float:
    """ROC AUC over all pixels of all images (masks binarised with > 0)."""
    return _score(roc_auc_score, np.asarray(masks), np.asarray(maps))


def pixel_ap(masks, maps) -> float:
    """Average precision over all pixels of all images."""
    return _score(average_precision_score, np.asarray(masks), np.asarray(maps))


def pro_curve(masks, maps, num_thresholds: int = NUM_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) points of the MVTec 3D-AD evaluator, sorted by increasing FPR, (1, 1) included.

    Regions are the 8-connected components of each gt mask, pooled over all images; all other pixels are
    negatives. Thresholds are the negative scores at `num_thresholds` evenly spaced positions of their
    sorted list; FPR at position `pos` is 1 - (pos + 1) / N_neg; a region's overlap is the fraction of its
    pixels scoring above the threshold; PRO is the mean overlap, every region weighted equally.
    """
    masks, maps = np.asarray(masks) > 0, np.asarray(maps, dtype=np.float64)
    if masks.ndim == 2:
        masks, maps = masks[None], maps[None]
    negatives, region_scores, region_weights, num_regions = [], [], [], 0
    for mask, scores in zip(masks, maps, strict=True):
        labeled, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        negatives.append(scores[labeled == 0])
        if count:
            sizes = np.bincount(labeled.ravel())
            inside = labeled > 0
            region_scores.append(scores[inside])
            region_weights.append(1.0 / sizes[labeled[inside]])
        num_regions += count
    negatives = np.sort(np.concatenate(negatives))
    if num_regions == 0 or negatives.size == 0:
        return np.array([np.nan]), np.array([np.nan])
    positives = np.concatenate(region_scores)
    order = np.argsort(positives, kind="stable")
    positives, weights = positives[order], np.concatenate(region_weights)[order]
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])  # weight of the positives with score <= s
    positions = np.linspace(0, negatives.size - 1, num=num_thresholds, dtype=int)
    thresholds = negatives[positions]
    fprs = 1.0 - (positions + 1) / negatives.size
    at_or_below = cumulative[np.searchsorted(positives, thresholds, side="right")]
    pros = (cumulative[-1] - at_or_below) / num_regions
    fprs, pros = np.concatenate([fprs, [1.0]]), np.concatenate([pros, [1.0]])
    order = np.argsort(fprs, kind="stable")
    return fprs[order], pros[order]


def trapezoid(x: np.ndarray, y: np.ndarray, x_max: float | None = None) -> float:
    """Trapezoid area under y(x) from x[0] to x_max, interpolating y linearly at x_max (official rule)."""
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x)[finite], np.asarray(y)[finite]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(list(x), x_max)
            if not 0 < ins < len(x):
                return float("nan")
            y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        keep = x <= x_max
        x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def aupro(masks, maps, fpr_limit: float = FPR_LIMIT, num_thresholds: int = NUM_THRESHOLDS) -> float:
    """Area under the PRO curve up to `fpr_limit`, divided by `fpr_limit` (nan without regions/negatives).

    Args:
        masks: (N, H, W) ground truth (> 0 is anomalous) for all test images of a category, good included.
        maps: (N, H, W) anomaly scores at the same resolution.
    """
    fprs, pros = pro_curve(masks, maps, num_thresholds)
    if np.isnan(fprs).all():
        return float("nan")
    return trapezoid(fprs, pros, x_max=fpr_limit) / fpr_limit


def per_defect_auroc(labels, scores, defects) -> dict[str, float]:
    """I-AUROC of each defect type against the good images: {defect: auroc}, "good" excluded."""
    labels, scores, defects = np.asarray(labels), np.asarray(scores, dtype=np.float64), np.asarray(defects)
    good = defects == GOOD
    result = {}
    for defect in sorted(set(defects.tolist()) - {GOOD}):
        keep = good | (defects == defect)
        result[defect] = image_auroc(labels[keep], scores[keep])
    return result


@dataclass
class Metrics:
    """The evaluation numbers of one category; nan where a metric is undefined."""

    i_auroc: float
    i_ap: float
    p_auroc: float
    p_ap: float
    aupro: float
    per_defect_i_auroc: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict with the keys i_auroc, i_ap, p_auroc, p_ap, aupro, per_defect_i_auroc."""
        return asdict(self)


def compute_metrics(
    labels, scores, masks, maps, defects=None, fpr_limit: float = FPR_LIMIT, num_thresholds: int = NUM_THRESHOLDS
) -> Metrics:
    """All metrics of one category; `masks`/`maps` are (N, H, W) at the evaluation size."""
    masks, maps = np.asarray(masks), np.asarray(maps)
    defects = defects if defects is not None else [GOOD if int(lab) == 0 else "anomalous" for lab in labels]
    return Metrics(
        i_auroc=image_auroc(labels, scores),
        i_ap=image_ap(labels, scores),
        p_auroc=pixel_auroc(masks, maps),
        p_ap=pixel_ap(masks, maps),
        aupro=aupro(masks, maps, fpr_limit, num_thresholds),
        per_defect_i_auroc=per_defect_auroc(labels, scores, defects),
    )
