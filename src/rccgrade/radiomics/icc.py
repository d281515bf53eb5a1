"""Intraclass correlation, vectorised over thousands of features at once.

Two-way ANOVA models of Shrout & Fleiss (1979) / McGraw & Wong (1996), single measurement:

* ICC(3,1) — two-way mixed, consistency: ``(MSR − MSE) / (MSR + (k−1)·MSE)``.
* ICC(2,1) — two-way random, absolute agreement:
  ``(MSR − MSE) / (MSR + (k−1)·MSE + k·(MSC − MSE)/n)``.

with ``n`` subjects (rows; here patients), ``k`` raters (columns; here perturbed copies), MSR the
between-subjects mean square, MSC the between-raters mean square and MSE the residual mean square.
All sums are taken over axis 0 and 1 of an ``(n, k, F)`` array, so one call handles every feature.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rccgrade.errors import StatsError


def anova_mean_squares(data: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Two-way ANOVA mean squares (without replication) per feature.

    Args:
        data: Array of shape ``(n_subjects, k_raters)`` or ``(n_subjects, k_raters, n_features)``.

    Returns:
        ``(msr, msc, mse)``: between-subjects, between-raters and residual mean squares, each of shape
        ``(n_features,)`` (or scalars' shape ``(1,)`` for 2-D input).

    Raises:
        StatsError: fewer than 2 subjects or 2 raters.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise StatsError(f"ICC needs an array (subjects, raters[, features]); got shape {x.shape}")
    n, k = x.shape[0], x.shape[1]
    if n < 2 or k < 2:
        raise StatsError(f"ICC needs at least 2 subjects and 2 raters; got {n} subjects and {k} raters")
    grand = x.mean(axis=(0, 1))
    row_means = x.mean(axis=1)  # (n, F)
    col_means = x.mean(axis=0)  # (k, F)
    ssr = k * ((row_means - grand) ** 2).sum(axis=0)
    ssc = n * ((col_means - grand) ** 2).sum(axis=0)
    resid = x - row_means[:, None, :] - col_means[None, :, :] + grand
    sse = (resid**2).sum(axis=(0, 1))
    msr = ssr / (n - 1)
    msc = ssc / (k - 1)
    mse = sse / ((n - 1) * (k - 1))
    return msr, msc, mse


def icc(data: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """ICC(3,1) and ICC(2,1) per feature.

    Args:
        data: ``(n_subjects, k_raters)`` or ``(n_subjects, k_raters, n_features)``. A feature with any
            non-finite value gets NaN, as does a feature constant over all subjects and raters (0/0).

    Returns:
        ``{"icc3_1": array, "icc2_1": array}``, each of shape ``(n_features,)``.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    finite = np.isfinite(x).all(axis=(0, 1))
    constant = np.ptp(np.where(np.isfinite(x), x, 0.0), axis=(0, 1)) == 0
    safe = np.where(np.isfinite(x), x, 0.0)
    n, k = x.shape[0], x.shape[1]
    msr, msc, mse = anova_mean_squares(safe)
    with np.errstate(divide="ignore", invalid="ignore"):
        den3 = msr + (k - 1) * mse
        den2 = den3 + k * (msc - mse) / n
        icc3 = np.where(den3 > 0, (msr - mse) / den3, np.nan)
        icc2 = np.where(den2 > 0, (msr - mse) / den2, np.nan)
    bad = ~finite | constant
    icc3[bad] = np.nan
    icc2[bad] = np.nan
    return {"icc3_1": icc3, "icc2_1": icc2}
