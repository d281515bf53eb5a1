"""Per-feature scores of the selection steps: univariate AUC and p-values, absolute correlations, ICC tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rccgrade.errors import ModelError

__all__ = ["abs_corr", "icc_mapping", "neg_log_loss_binary", "univariate_auc", "univariate_pvalues"]


def univariate_auc(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of each column used alone as a score (ties count 1/2).

    Computed from the Mann–Whitney U statistic: AUC = (R₁ − n₁(n₁+1)/2) / (n₁·n₀) with R₁ the rank sum
    of the positives (mid-ranks for ties). 0.5 means no discrimination; |AUC − 0.5| is the relevance used
    by the correlation filter and mRMR.
    """
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = y.size - n1
    ranks = stats.rankdata(X, axis=0)
    r1 = ranks[y].sum(axis=0)
    return (r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def univariate_pvalues(X: np.ndarray, y: np.ndarray, test: str = "mannwhitney") -> np.ndarray:
    """Two-sided p-value of each column between ``y == 1`` and ``y == 0`` (constant columns get 1)."""
    pos, neg = X[y == 1], X[y == 0]
    if test == "mannwhitney":
        p = stats.mannwhitneyu(pos, neg, alternative="two-sided", method="asymptotic", axis=0).pvalue
    elif test == "ttest":
        p = stats.ttest_ind(pos, neg, equal_var=False, axis=0).pvalue
    else:
        raise ModelError(f"unknown univariate test {test!r}; use 'mannwhitney' or 'ttest'")
    p = np.asarray(p, dtype=np.float64)
    return np.where(np.isfinite(p), p, 1.0)


def neg_log_loss_binary(estimator: Any, X: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's ``neg_log_loss`` scorer for a fitted binary linear model, without its input checks.

    ``LogisticRegressionCV`` scores every (fold, C) of its path with the scorer it is given; the stock
    scorer's label and probability validation cost about 7 ms a call, 20× the arithmetic, and dominated
    the LASSO selection of the models stage. This is the same arithmetic in the same order (decision
    function ``X @ coef_.T + intercept_``, ``expit``, clip to [ε, 1 − ε], mean of −log p(true class)),
    so it returns exactly the same number (tested against ``get_scorer("neg_log_loss")``).

    Args:
        estimator: Fitted binary linear classifier with ``coef_`` (1, p), ``intercept_`` (1,), ``classes_``.
        X: Features, shape (n, p).
        y: Labels (values of ``classes_``), shape (n,).
    """
    from scipy.special import expit, xlogy

    scores = np.asarray(X) @ np.asarray(estimator.coef_).T + estimator.intercept_
    prob = expit(scores.reshape(-1))
    proba = np.stack([1 - prob, prob], axis=1)
    eps = np.finfo(proba.dtype).eps
    proba = np.clip(proba, eps, 1 - eps)
    onehot = (np.asarray(y).reshape(-1, 1) == np.asarray(estimator.classes_).reshape(1, -1)).astype(proba.dtype)
    loss = -np.sum(xlogy(onehot, proba), axis=1)
    return -float(np.average(loss))


def abs_corr(arr: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        arr = stats.rankdata(arr, axis=0)
    elif method != "pearson":
        raise ModelError(f"unknown correlation method {method!r}; use 'pearson' or 'spearman'")
    sd = arr.std(axis=0)
    z = (arr - arr.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    corr = np.abs(z.T @ z) / max(arr.shape[0], 1)
    corr[:, sd == 0] = 0.0
    corr[sd == 0, :] = 0.0
    return corr


def icc_mapping(icc: Mapping[str, float] | pd.Series | pd.DataFrame | None) -> dict[str, float]:
    """Normalise an ICC table (mapping, Series or DataFrame) to ``{feature: icc}``."""
    if icc is None:
        return {}
    if isinstance(icc, pd.DataFrame):
        if {"feature", "icc"} <= set(icc.columns):
            return {str(k): float(v) for k, v in zip(icc["feature"], icc["icc"], strict=True)}
        if "icc" in icc.columns:
            return {str(k): float(v) for k, v in icc["icc"].items()}
        raise ModelError("an ICC table needs columns 'feature' and 'icc' (or an 'icc' column indexed by feature)")
    if isinstance(icc, pd.Series):
        return {str(k): float(v) for k, v in icc.items()}
    return {str(k): float(v) for k, v in dict(icc).items()}
