"""A 95 % interval for one patient's risk from any classifier: the observed rate among similarly scored patients.

Logistic arms get a Wald interval from their coefficient covariance (:func:`rccgrade.models.explain.
probability_interval`). Forests, boosted trees, SVMs and the stacked model have no closed-form covariance, and
the bundle stores no bootstrap refits. For them this module gives an interval that needs only what the bundle
keeps anyway, the training patients' **out-of-fold** probabilities and labels (``extra.oof_calibration``):

* the ``k`` training patients whose out-of-fold probability is nearest to the new patient's probability on the
  logit scale (ties broken by training order, so the result is deterministic);
* the Wilson score interval of the proportion of high-grade tumours among them.

It answers "of the training patients this model scored like this one, without having seen them, how many were
high grade?", so it includes the model's miscalibration and the finite training sample. It does **not** include
the variation of the model itself under refitting (no refits are stored); the page says so. ``k`` defaults to
``max(20, round(√n · 2))`` capped at ``n`` (n training patients): wide enough for a stable proportion, narrow
enough to stay local.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rccgrade.errors import ModelError
from rccgrade.models.stacking import logit

#: What a page says about this interval.
METHOD = (
    "Wilson 95 % interval of the high-grade rate among the {k} training patients with the nearest out-of-fold "
    "probability (logit scale); it reflects calibration and sample size, not refitting the model, and it "
    "can exclude the model's own probability when the model is over- or under-confident there"
)


def default_k(n: int) -> int:
    """Neighbours used for ``n`` training patients: ``min(n, max(20, round(2·√n)))``."""
    return int(min(n, max(20, round(2.0 * math.sqrt(n)))))


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n`` (Wilson 1927)."""
    from scipy.stats import norm

    if n <= 0:
        raise ModelError("a Wilson interval needs at least one observation")
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def score_interval(
    oof: Sequence[float],
    y: Sequence[int],
    probability: pd.Series,
    *,
    k: int | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Nearest-score Wilson interval for each patient of ``probability`` (see the module docstring).

    Args:
        oof: Training patients' out-of-fold probabilities (n,).
        y: Their labels, 0/1 (n,).
        probability: New patients' probabilities, indexed by patient.
        k: Neighbours (default :func:`default_k`).
        level: Coverage.

    Returns:
        DataFrame (patients × ``lower``, ``upper``, ``k``).

    Raises:
        ModelError: lengths differ, fewer than 10 training patients, a non-finite value, or labels not 0/1.
    """
    s = np.asarray(oof, dtype=np.float64)
    lab = np.asarray(y)
    if s.shape != lab.shape or s.ndim != 1:
        raise ModelError(f"out-of-fold probabilities ({s.shape}) and labels ({lab.shape}) do not match")
    if s.size < 10:
        raise ModelError(f"only {s.size} training patients: too few for a nearest-score interval")
    if not np.all(np.isfinite(s)) or not np.isin(lab, (0, 1)).all():
        raise ModelError("out-of-fold probabilities must be finite and labels 0/1")
    kk = default_k(s.size) if k is None else int(k)
    if not 1 <= kk <= s.size:
        raise ModelError(f"k={kk} must lie between 1 and the {s.size} training patients")
    train_logit = logit(s)
    rows = []
    for value in np.asarray(probability, dtype=np.float64):
        if not np.isfinite(value):
            rows.append((np.nan, np.nan, kk))
            continue
        dist = np.abs(train_logit - logit(value))
        nearest = np.argsort(dist, kind="stable")[:kk]
        lo, hi = wilson(int(lab[nearest].sum()), kk, level)
        rows.append((lo, hi, kk))
    return pd.DataFrame(rows, columns=["lower", "upper", "k"], index=probability.index)
