"""Decision threshold chosen on training data, and the metrics it gives on any cohort.

The threshold is a *fitted* quantity: choose it with :func:`youden_threshold` on the training patients
only, store it in the model bundle, then apply it unchanged to the test cohort with
:func:`threshold_metrics`. A patient is called positive when ``score >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from rccgrade.errors import StatsError
from rccgrade.stats._validate import ArrayLike, as_labels, as_scores, check_level

__all__ = ["ConfusionCounts", "YoudenResult", "confusion_counts", "threshold_metrics", "wilson_ci", "youden_threshold"]


@dataclass(frozen=True)
class YoudenResult:
    """The Youden-optimal threshold and its training performance.

    Attributes:
        threshold: Cut-off on the score scale (midpoint between two consecutive distinct training scores).
        youden_j: Sensitivity + specificity − 1 at the threshold.
        sensitivity: Training sensitivity at the threshold.
        specificity: Training specificity at the threshold.
    """

    threshold: float
    youden_j: float
    sensitivity: float
    specificity: float


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts of the 2×2 table at one threshold."""

    tp: int
    fp: int
    tn: int
    fn: int


def youden_threshold(y: ArrayLike, score: ArrayLike) -> YoudenResult:
    """Threshold maximising Youden's J = sensitivity + specificity − 1 on (training) data.

    Candidate cut-offs are the midpoints between consecutive distinct scores, as pROC's ``coords(x="best")``,
    so the chosen value does not sit on a training patient's score. Ties in J are broken towards the
    highest threshold (the most specific rule), which makes the choice deterministic.

    Raises:
        StatsError: one class only, NaN scores or length mismatch.
    """
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    u = np.unique(s)  # ascending
    if u.size == 1:
        raise StatsError("every score is identical; no threshold can separate the classes")
    cuts = (u[:-1] + u[1:]) / 2.0
    pos = np.sort(s[yy == 1])
    neg = np.sort(s[yy == 0])
    sens = (pos.size - np.searchsorted(pos, cuts, side="left")) / pos.size
    spec = np.searchsorted(neg, cuts, side="left") / neg.size
    j = sens + spec - 1.0
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0.0, atol=1e-12))[-1]
    return YoudenResult(
        threshold=float(cuts[best]),
        youden_j=float(j[best]),
        sensitivity=float(sens[best]),
        specificity=float(spec[best]),
    )


def confusion_counts(y: ArrayLike, score: ArrayLike, threshold: float) -> ConfusionCounts:
    """2×2 counts with positive call ``score >= threshold`` (one class only is allowed here)."""
    yy = as_labels(y, require_both=False)
    s = as_scores(score, yy.size)
    call = s >= float(threshold)
    pos = yy == 1
    return ConfusionCounts(
        tp=int((call & pos).sum()),
        fp=int((call & ~pos).sum()),
        tn=int((~call & ~pos).sum()),
        fn=int((~call & pos).sum()),
    )


def wilson_ci(successes: ArrayLike, trials: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (vectorised); NaN where ``trials`` is 0.

    Args:
        successes: Number of successes.
        trials: Number of trials.
        level: Confidence level.

    Returns:
        (lower, upper) arrays.
    """
    level = check_level(level)
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if np.any(x < 0) or np.any(x > n):
        raise StatsError("Wilson interval needs 0 <= successes <= trials")
    z = sps.norm.ppf(0.5 + level / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1.0 + z**2 / n
        centre = (p + z**2 / (2.0 * n)) / denom
        half = z / denom * np.sqrt(p * (1.0 - p) / n + z**2 / (4.0 * n**2))
        lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return lo, hi


def threshold_metrics(y: ArrayLike, score: ArrayLike, threshold: float, level: float = 0.95) -> pd.DataFrame:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 at a fixed threshold, with Wilson CIs.

    Args:
        y: 0/1 labels of the cohort evaluated (training or test).
        score: Scores of that cohort.
        threshold: The cut-off chosen on training data (``score >= threshold`` is positive).
        level: Confidence level of the Wilson intervals.

    Returns:
        DataFrame indexed by ``metric`` with ``value, ci_lower, ci_upper, numerator, denominator``. A metric
        with a zero denominator (e.g. PPV when nobody is called positive) is NaN. F1 is not a binomial
        proportion, so it has no Wilson interval (NaN limits).
    """
    c = confusion_counts(y, score, threshold)
    num = np.array([c.tp + c.tn, c.tp, c.tn, c.tp, c.tn], dtype=float)
    den = np.array([c.tp + c.tn + c.fp + c.fn, c.tp + c.fn, c.tn + c.fp, c.tp + c.fp, c.tn + c.fn], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(den > 0, num / den, np.nan)
    lo, hi = wilson_ci(num, den, level)
    f1_den = 2 * c.tp + c.fp + c.fn
    names = ["accuracy", "sensitivity", "specificity", "ppv", "npv", "f1"]
    return pd.DataFrame(
        {
            "value": np.append(val, 2 * c.tp / f1_den if f1_den else np.nan),
            "ci_lower": np.append(lo, np.nan),
            "ci_upper": np.append(hi, np.nan),
            "numerator": np.append(num, 2 * c.tp),
            "denominator": np.append(den, f1_den),
        },
        index=pd.Index(names, name="metric"),
    )
