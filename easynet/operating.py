"""The operating point from labels: the threshold that meets a target on images a person has judged.

Scores are on the threshold's own scale, ``ratio = score / threshold`` of the head that judged the image (1 is
today's threshold), so one cut-off serves both heads of the control gate: a new cut-off ``t`` multiplies both heads'
thresholds by ``t``, which leaves the score rule's choice of head unchanged (both ratios are divided by ``t``).

* ``target_miss`` (say 0.01): a cut-off that flags all but at most that share of the defective images;
* ``target_false_reject`` (say 0.02): a cut-off that flags at most that share of the good images.

Both sit half-way between the judged image at the boundary and its neighbour on the other side, never on a judged
image's ratio: the counts on the judged images are those of the boundary, and the margin to either side serves
parts nobody has judged yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from easynet.errors import InputError

MIN_EACH = 3  # judged images of each kind (OK and NG) before an operating point is offered


@dataclass(frozen=True)
class Confusion:
    """Counts at one cut-off: NG flagged (caught), NG passed (missed), OK flagged (falsely rejected), OK passed."""

    cutoff: float
    caught: int
    missed: int
    false_rejects: int
    passed: int

    @property
    def miss_rate(self) -> float:
        return self.missed / max(1, self.caught + self.missed)

    @property
    def false_reject_rate(self) -> float:
        return self.false_rejects / max(1, self.false_rejects + self.passed)


def confusion(ratios: np.ndarray, labels: np.ndarray, cutoff: float) -> Confusion:
    """The counts at ``cutoff`` (an image is flagged when its ratio >= cutoff; labels 1 = NG, 0 = OK)."""
    ratios, labels = np.asarray(ratios, float), np.asarray(labels, int)
    flagged = ratios >= cutoff
    ng = labels == 1
    return Confusion(
        float(cutoff),
        int((flagged & ng).sum()),
        int((~flagged & ng).sum()),
        int((flagged & ~ng).sum()),
        int((~flagged & ~ng).sum()),
    )


def _check(ratios: np.ndarray, labels: np.ndarray) -> None:
    n_ng, n_ok = int((labels == 1).sum()), int((labels == 0).sum())
    if n_ng < MIN_EACH or n_ok < MIN_EACH:
        raise InputError(
            f"an operating point needs at least {MIN_EACH} judged OK and {MIN_EACH} judged NG images of this model; "
            f"there are {n_ok} OK and {n_ng} NG"
        )
    if not np.all(np.isfinite(ratios)):
        raise InputError("the judged images' scores are not all finite numbers")


def cutoff_for_miss(ratios: np.ndarray, labels: np.ndarray, target: float) -> float:
    """A cut-off missing at most ``target`` of the NG images: with k = floor(target x #NG) misses allowed,
    half-way below the (k+1)-th lowest NG ratio (so it and every NG above it are flagged), towards the next ratio
    below it. Not on the ratio itself: the saved threshold (old threshold x cut-off) must still flag that image
    after rounding, and a margin to both sides is what an unseen part deserves."""
    ratios, labels = np.asarray(ratios, float), np.asarray(labels, int)
    _check(ratios, labels)
    if not 0 <= target < 1:
        raise InputError(f"the share of defects that may be missed must be from 0 to less than 1, got {target}")
    ng = np.sort(ratios[labels == 1])
    allowed = math.floor(target * len(ng) + 1e-9)
    lowest_flagged = ng[allowed]
    below = ratios[ratios < lowest_flagged]
    return float((lowest_flagged + below.max()) / 2) if below.size else float(np.nextafter(lowest_flagged, 0.0))


def cutoff_for_false_reject(ratios: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest cut-off that flags at most ``target`` of the OK images: with m = floor(target x #OK) rejects allowed,
    half-way above the (m+1)-th highest OK ratio (so it and every OK below it pass)."""
    ratios, labels = np.asarray(ratios, float), np.asarray(labels, int)
    _check(ratios, labels)
    if not 0 <= target < 1:
        raise InputError(f"the share of good parts that may be rejected must be from 0 to less than 1, got {target}")
    ok = np.sort(ratios[labels == 0])[::-1]
    allowed = math.floor(target * len(ok) + 1e-9)
    highest_passing = ok[allowed]
    above = ratios[ratios > highest_passing]
    return float((highest_passing + above.min()) / 2) if above.size else float(np.nextafter(highest_passing, np.inf))


def roc(ratios: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-reject rate, catch rate, cut-off) over every distinct cut-off, for the ROC curve."""
    ratios, labels = np.asarray(ratios, float), np.asarray(labels, int)
    cuts = np.unique(np.concatenate([ratios, [np.inf]]))[::-1]
    points = [confusion(ratios, labels, c) for c in cuts]
    return (
        np.array([p.false_reject_rate for p in points]),
        np.array([1 - p.miss_rate for p in points]),
        cuts,
    )
