"""Calibration of predicted probabilities: curves, intercept and slope, Brier score, Hosmer–Lemeshow.

Definitions (as R's ``rms::val.prob`` and Van Calster et al. 2019, BMC Med 17:230):

* calibration **intercept** (calibration-in-the-large): ``a`` in ``logit P(y=1) = a + logit(p)`` — a
  logistic model with ``logit(p)`` as an offset (slope fixed at 1). Ideal 0; > 0 means risks are too low.
* calibration **slope**: ``b`` in ``logit P(y=1) = a + b·logit(p)`` (logistic recalibration). Ideal 1;
  < 1 means predictions are too extreme (overfitting).
* **Brier score**: mean of (p − y)²; 0 is perfect, p̄(1−p̄) is the score of predicting the prevalence.
* **Hosmer–Lemeshow**: patients are grouped at the deciles of predicted risk (R ``quantile`` type 7 breaks,
  duplicates dropped, right-closed intervals, as ``ResourceSelection::hoslem.test``), and
  Σ (O−E)²/E over both outcome columns is referred to χ² with **g − 2** degrees of freedom on the
  development (training) cohort, where the model was fitted, and **g** on a validation cohort, where no
  parameter was estimated (Hosmer & Lemeshow, Applied Logistic Regression, 3rd ed., §5.2.2). g is the
  number of non-empty groups actually formed.

Probabilities of exactly 0 or 1 are clipped to [1e-10, 1 − 1e-10] before taking logits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import expit

from rccgrade.errors import StatsError
from rccgrade.stats._validate import ArrayLike, as_labels, as_scores, check_level
from rccgrade.stats.thresholds import wilson_ci

__all__ = [
    "CalibrationFit",
    "HosmerLemeshowResult",
    "brier_score",
    "calibration_curve",
    "calibration_intercept",
    "calibration_slope",
    "hosmer_lemeshow",
    "lowess",
    "smoothed_calibration",
]

logger = logging.getLogger(__name__)

_EPS = 1e-10


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(q / (1.0 - q))


def _inputs(y: ArrayLike, p: ArrayLike, require_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    yy = as_labels(y, require_both=require_both)
    pp = as_scores(p, yy.size, name="predicted probability", probability=True)
    return yy, pp


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome (0 = perfect)."""
    yy, pp = _inputs(y, p, require_both=False)
    return float(np.mean((pp - yy) ** 2))


@dataclass(frozen=True)
class CalibrationFit:
    """A calibration coefficient with its Wald confidence interval.

    Attributes:
        estimate: Intercept (ideal 0) or slope (ideal 1).
        se: Standard error from the observed information.
        ci_lower: Lower confidence limit.
        ci_upper: Upper confidence limit.
        converged: False when Newton–Raphson did not converge (e.g. perfect separation); then all are NaN.
    """

    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    converged: bool


def _newton_logistic(
    X: np.ndarray, y: np.ndarray, offset: np.ndarray, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Maximum-likelihood logistic regression by Newton–Raphson (IRLS); returns beta, covariance, converged."""
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        eta = offset + X @ beta
        mu = expit(eta)
        w = mu * (1.0 - mu)
        grad = X.T @ (y - mu)
        hess = (X * w[:, None]).T @ X
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return beta, np.full((X.shape[1],) * 2, np.nan), False
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e6:
            return beta, np.full((X.shape[1],) * 2, np.nan), False
        if np.abs(step).max() < 1e-10:
            eta = offset + X @ beta
            mu = expit(eta)
            hess = (X * (mu * (1.0 - mu))[:, None]).T @ X
            try:
                return beta, np.linalg.inv(hess), True
            except np.linalg.LinAlgError:
                return beta, np.full((X.shape[1],) * 2, np.nan), False
    return beta, np.full((X.shape[1],) * 2, np.nan), False


def _fit_result(est: float, var: float, level: float, ok: bool) -> CalibrationFit:
    if not ok or not np.isfinite(var):
        return CalibrationFit(np.nan, np.nan, np.nan, np.nan, False)
    se = float(np.sqrt(var))
    z = sps.norm.ppf(0.5 + level / 2.0)
    return CalibrationFit(float(est), se, float(est - z * se), float(est + z * se), True)


def calibration_intercept(y: ArrayLike, p: ArrayLike, level: float = 0.95) -> CalibrationFit:
    """Calibration-in-the-large: intercept of a logistic model with offset logit(p) (slope fixed at 1)."""
    level = check_level(level)
    yy, pp = _inputs(y, p)
    beta, cov, ok = _newton_logistic(np.ones((yy.size, 1)), yy.astype(float), _logit(pp))
    if not ok:
        logger.warning("calibration intercept: Newton–Raphson did not converge; reporting NaN")
    return _fit_result(beta[0], cov[0, 0], level, ok)


def calibration_slope(y: ArrayLike, p: ArrayLike, level: float = 0.95) -> CalibrationFit:
    """Calibration slope: coefficient of logit(p) in a logistic recalibration model (with intercept)."""
    level = check_level(level)
    yy, pp = _inputs(y, p)
    X = np.column_stack([np.ones(yy.size), _logit(pp)])
    beta, cov, ok = _newton_logistic(X, yy.astype(float), np.zeros(yy.size))
    if not ok:
        logger.warning("calibration slope: Newton–Raphson did not converge (separation?); reporting NaN")
    return _fit_result(beta[1], cov[1, 1], level, ok)


def _bin_edges(p: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if n_bins < 1:
        raise StatsError(f"the number of bins must be at least 1; got {n_bins}")
    if strategy == "quantile":
        return np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    raise StatsError(f"unknown binning strategy {strategy!r}; use 'quantile' or 'uniform'")


def _assign(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Right-closed bins (a, b], the first one including its lower edge (R ``cut(include.lowest=TRUE)``)."""
    return np.searchsorted(edges[1:-1], p, side="left")


def calibration_curve(
    y: ArrayLike,
    p: ArrayLike,
    n_bins: int = 10,
    strategy: Literal["quantile", "uniform"] = "quantile",
    level: float = 0.95,
) -> pd.DataFrame:
    """Binned calibration curve: observed fraction of positives against mean predicted probability.

    Args:
        y: 0/1 outcomes.
        p: Predicted probabilities.
        n_bins: Number of bins (quantile bins may merge when predictions tie).
        strategy: ``"quantile"`` (equal-size groups, default) or ``"uniform"`` (equal-width on [0, 1]).
        level: Confidence level of the Wilson interval of each observed fraction.

    Returns:
        One row per non-empty bin: ``bin, n, p_min, p_max, mean_predicted, observed, n_positive,
        ci_lower, ci_upper``.
    """
    yy, pp = _inputs(y, p, require_both=False)
    edges = _bin_edges(pp, n_bins, strategy)
    groups = _assign(pp, edges)
    df = pd.DataFrame({"g": groups, "p": pp, "y": yy})
    agg = df.groupby("g").agg(
        n=("y", "size"), p_min=("p", "min"), p_max=("p", "max"), mean_predicted=("p", "mean"), n_positive=("y", "sum")
    )
    agg["observed"] = agg["n_positive"] / agg["n"]
    lo, hi = wilson_ci(agg["n_positive"].to_numpy(), agg["n"].to_numpy(), level)
    agg["ci_lower"] = lo
    agg["ci_upper"] = hi
    agg = agg.reset_index(drop=True)
    agg.insert(0, "bin", np.arange(len(agg)))
    return agg[["bin", "n", "p_min", "p_max", "mean_predicted", "observed", "n_positive", "ci_lower", "ci_upper"]]


def lowess(x: ArrayLike, y: ArrayLike, xvals: ArrayLike, frac: float = 2.0 / 3.0) -> np.ndarray:
    """Locally weighted linear regression (Cleveland's LOWESS without robustness iterations).

    At each evaluation point the ``k = int(frac·n)`` nearest observations get tricube weights
    (1 − (d/h)³)³ with h the distance to the farthest of them, and a weighted straight line is fitted.

    Args:
        x: Predictor (n,).
        y: Response (n,).
        xvals: Evaluation points.
        frac: Fraction of the data in each local neighbourhood.

    Returns:
        Fitted values at ``xvals``.
    """
    xx = np.asarray(x, dtype=float)
    yy = np.asarray(y, dtype=float)
    xv = np.atleast_1d(np.asarray(xvals, dtype=float))
    n = xx.size
    if not 0.0 < frac <= 1.0:
        raise StatsError(f"lowess frac must be in (0, 1]; got {frac}")
    k = min(max(int(frac * n + 1e-10), 2), n)
    d = np.abs(xv[:, None] - xx[None, :])  # (G, n)
    h = np.partition(d, k - 1, axis=1)[:, k - 1]
    out = np.empty(xv.size)
    for i in range(xv.size):
        if h[i] <= 0:
            sel = d[i] == 0
            out[i] = yy[sel].mean()
            continue
        u = np.clip(d[i] / h[i], 0.0, 1.0)
        w = (1.0 - u**3) ** 3
        sw = w.sum()
        xm = (w * xx).sum() / sw
        ym = (w * yy).sum() / sw
        sxx = (w * (xx - xm) ** 2).sum()
        if sxx <= 1e-12 * max(1.0, h[i] ** 2) * sw:
            out[i] = ym
        else:
            slope = (w * (xx - xm) * (yy - ym)).sum() / sxx
            out[i] = ym + slope * (xv[i] - xm)
    return out


def smoothed_calibration(y: ArrayLike, p: ArrayLike, n_points: int = 100, frac: float = 2.0 / 3.0) -> pd.DataFrame:
    """Smoothed calibration curve: LOWESS of the outcome on the predicted probability (``rms::val.prob``).

    Evaluated on ``n_points`` equally spaced probabilities between the smallest and largest prediction,
    clipped to [0, 1].

    Returns:
        DataFrame with ``predicted, observed``.
    """
    yy, pp = _inputs(y, p, require_both=False)
    grid = np.linspace(pp.min(), pp.max(), n_points)
    return pd.DataFrame({"predicted": grid, "observed": np.clip(lowess(pp, yy, grid, frac=frac), 0.0, 1.0)})


@dataclass(frozen=True)
class HosmerLemeshowResult:
    """Hosmer–Lemeshow goodness-of-fit test.

    Attributes:
        statistic: Σ (O−E)²/E over groups and both outcome columns.
        df: Degrees of freedom (g − 2 development, g validation).
        p_value: Upper tail of χ²(df).
        n_groups: Number of non-empty risk groups g.
        table: Per group ``n, observed_1, expected_1, observed_0, expected_0``.
    """

    statistic: float
    df: int
    p_value: float
    n_groups: int
    table: pd.DataFrame


def hosmer_lemeshow(
    y: ArrayLike, p: ArrayLike, n_groups: int = 10, cohort: Literal["development", "validation"] = "development"
) -> HosmerLemeshowResult:
    """Hosmer–Lemeshow test at deciles (by default) of predicted risk.

    Args:
        y: 0/1 outcomes.
        p: Predicted probabilities.
        n_groups: Requested number of risk groups (fewer when predictions tie).
        cohort: ``"development"`` (df = g − 2, the cohort the model was fitted on) or ``"validation"``
            (df = g, an independent cohort).

    Raises:
        StatsError: invalid inputs, unknown cohort, or too few groups for a positive df.
    """
    yy, pp = _inputs(y, p)
    edges = _bin_edges(pp, n_groups, "quantile")
    g = _assign(pp, edges)
    df_ = pd.DataFrame({"g": g, "y": yy, "p": pp})
    tab = df_.groupby("g").agg(n=("y", "size"), observed_1=("y", "sum"), expected_1=("p", "sum"))
    tab["observed_0"] = tab["n"] - tab["observed_1"]
    tab["expected_0"] = tab["n"] - tab["expected_1"]
    tab = tab.reset_index(drop=True)
    obs = tab[["observed_1", "observed_0"]].to_numpy(float)
    exp = tab[["expected_1", "expected_0"]].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(exp > 0, (obs - exp) ** 2 / exp, np.where(obs > 0, np.inf, 0.0))
    stat = float(terms.sum())
    n_g = len(tab)
    if cohort == "development":
        dof = n_g - 2
    elif cohort == "validation":
        dof = n_g
    else:
        raise StatsError(f"unknown cohort kind {cohort!r}; use 'development' or 'validation'")
    if dof < 1:
        raise StatsError(
            f"only {n_g} distinct risk group(s) could be formed (many tied predictions); Hosmer–Lemeshow needs "
            "more distinct predicted probabilities"
        )
    return HosmerLemeshowResult(statistic=stat, df=dof, p_value=float(sps.chi2.sf(stat, dof)), n_groups=n_g, table=tab)
