"""ComBat harmonisation of features across centres (Johnson, Li & Rabinovic 2007), fitted on training data.

Scanners and protocols shift radiomics and deep features centre by centre. ComBat removes a per-centre
location and scale effect per feature, borrowing strength across features with empirical-Bayes priors.
Here it is a scikit-learn transformer so it is fitted inside each training fold, never on test patients.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from rccgrade.errors import ModelError
from rccgrade.features.matrix import numeric_matrix as _numeric_matrix

log = logging.getLogger(__name__)

__all__ = ["ComBat", "combat_fit"]


def combat_fit(
    data: np.ndarray, batch: np.ndarray, *, empirical_bayes: bool = True, tol: float = 1e-4, max_iter: int = 1000
) -> dict[str, Any]:
    """Estimate ComBat location/scale parameters (Johnson, Li & Rabinovic 2007), no covariates.

    Model: x_ij(b) = α_j + γ_bj + δ_bj·ε_ij. Features are standardised by the grand mean α_j (the mean of
    the batch means weighted by batch size) and the pooled residual variance σ²_j (divided by n, as in
    ``sva::ComBat``); per batch, γ̂ and δ̂² are the mean and variance (ddof 1) of the standardised data. With
    ``empirical_bayes`` they are shrunk towards normal / inverse-gamma priors estimated across features
    (parametric ComBat, iterated to relative change < ``tol``); without, the raw estimates are used
    (plain location/scale alignment).

    Args:
        data: Array (n_samples, n_features).
        batch: Batch label per sample; every batch needs at least 2 samples.

    Returns:
        ``{"batches", "grand_mean", "var_pooled", "gamma", "delta"}`` with gamma/delta of shape
        (n_batches, n_features).
    """
    data = np.asarray(data, dtype=np.float64)
    batch = np.asarray(batch).astype(str)
    levels = sorted(set(batch.tolist()))
    n = data.shape[0]
    idx = [np.flatnonzero(batch == b) for b in levels]
    sizes = np.array([len(i) for i in idx], dtype=np.float64)
    small = [b for b, s in zip(levels, sizes, strict=True) if s < 2]
    if small:
        raise ModelError(
            f"ComBat needs at least 2 training patients per center; centers {small} have fewer — merge them "
            "or turn ComBat off (models.selection.combat: false)"
        )
    means = np.vstack([data[i].mean(axis=0) for i in idx])
    grand = (sizes[:, None] * means).sum(axis=0) / n
    resid = np.empty_like(data)
    for k, i in enumerate(idx):
        resid[i] = data[i] - means[k]
    var_pooled = (resid**2).sum(axis=0) / n
    var_pooled = np.where(var_pooled > 0, var_pooled, 1.0)
    s = (data - grand) / np.sqrt(var_pooled)
    gamma_hat = np.vstack([s[i].mean(axis=0) for i in idx])
    delta_hat = np.vstack([s[i].var(axis=0, ddof=1) for i in idx])
    delta_hat = np.where(delta_hat > 0, delta_hat, 1.0)
    if not empirical_bayes:
        return {
            "batches": levels,
            "grand_mean": grand,
            "var_pooled": var_pooled,
            "gamma": gamma_hat,
            "delta": delta_hat,
        }
    gamma_star = np.empty_like(gamma_hat)
    delta_star = np.empty_like(delta_hat)
    for k, i in enumerate(idx):
        g_bar = gamma_hat[k].mean()
        t2 = gamma_hat[k].var(ddof=1) if gamma_hat.shape[1] > 1 else 0.0
        m = delta_hat[k].mean()
        s2 = delta_hat[k].var(ddof=1) if delta_hat.shape[1] > 1 else 0.0
        if s2 <= 0 or t2 <= 0:
            gamma_star[k], delta_star[k] = gamma_hat[k], delta_hat[k]
            continue
        a = (2.0 * s2 + m**2) / s2
        b = (m * s2 + m**3) / s2
        nb = sizes[k]
        g_old, d_old = gamma_hat[k].copy(), delta_hat[k].copy()
        for _ in range(max_iter):
            g_new = (t2 * nb * gamma_hat[k] + d_old * g_bar) / (t2 * nb + d_old)
            sum2 = ((s[i] - g_new) ** 2).sum(axis=0)
            d_new = (b + 0.5 * sum2) / (nb / 2.0 + a - 1.0)
            change = max(
                float(np.max(np.abs(g_new - g_old) / np.maximum(np.abs(g_old), 1e-12))),
                float(np.max(np.abs(d_new - d_old) / np.maximum(np.abs(d_old), 1e-12))),
            )
            g_old, d_old = g_new, d_new
            if change < tol:
                break
        gamma_star[k], delta_star[k] = g_old, d_old
    return {"batches": levels, "grand_mean": grand, "var_pooled": var_pooled, "gamma": gamma_star, "delta": delta_star}


class ComBat(TransformerMixin, BaseEstimator):
    """ComBat harmonisation of features across centres, fitted on the training patients only.

    The centre of each row is looked up by the row's index (``patient_id``) in ``batches``, so the step
    works inside a Pipeline where only X flows. Every training patient needs a centre. Test patients are
    adjusted with the training estimates of their centre; a centre unseen in training — or a new patient
    absent from ``batches`` (e.g. at ``predict`` time) — is left on the pooled scale (``unknown="pooled"``,
    logged) or is an error (``unknown="error"``).

    Args:
        batches: ``patient_id`` → centre label (all patients that may be transformed).
        empirical_bayes: Parametric empirical-Bayes shrinkage (standard ComBat) or raw location/scale.
        unknown: What to do with a centre not seen in training.
    """

    def __init__(
        self,
        batches: Mapping[str, str] | None = None,
        empirical_bayes: bool = True,
        unknown: Literal["pooled", "error"] = "pooled",
    ) -> None:
        self.batches = batches
        self.empirical_bayes = empirical_bayes
        self.unknown = unknown

    def _labels(self, X: pd.DataFrame, *, fitting: bool = True) -> np.ndarray:
        table = dict(self.batches or {})
        missing = [str(p) for p in X.index if p not in table or table[p] is None]
        if missing and not fitting:
            return np.asarray([str(table.get(p) or "<unknown>") for p in X.index], dtype=object)
        if missing:
            raise ModelError(
                f"ComBat: no center known for patient(s) {missing[:5]}; give every patient a 'center' in the "
                "manifest or turn ComBat off"
            )
        return np.asarray([str(table[p]) for p in X.index], dtype=object)

    def fit(self, X: Any, y: Any = None) -> ComBat:
        """Estimate per-centre location and scale on the training patients."""
        if not isinstance(X, pd.DataFrame):
            raise ModelError("ComBat needs a DataFrame indexed by patient_id to find each patient's center")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        params = combat_fit(_numeric_matrix(X, "ComBat"), self._labels(X), empirical_bayes=self.empirical_bayes)
        self.batches_ = list(params["batches"])
        self.grand_mean_ = params["grand_mean"]
        self.var_pooled_ = params["var_pooled"]
        self.gamma_ = params["gamma"]
        self.delta_ = params["delta"]
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Same names as the input."""
        return np.asarray(self.feature_names_in_, dtype=object)

    def transform(self, X: Any) -> pd.DataFrame:
        """Remove the centre effect estimated in training."""
        if not isinstance(X, pd.DataFrame):
            raise ModelError("ComBat needs a DataFrame indexed by patient_id to find each patient's center")
        X = X[list(self.feature_names_in_)]
        arr = _numeric_matrix(X, "ComBat")
        labels = self._labels(X, fitting=False)
        sd = np.sqrt(self.var_pooled_)
        s = (arr - self.grand_mean_) / sd
        out = s.copy()
        unseen = sorted(set(labels.tolist()) - set(self.batches_))
        if unseen:
            if self.unknown == "error":
                raise ModelError(f"ComBat: center(s) {unseen} were not in the training data")
            log.warning("ComBat: center(s) %s unseen in training left unadjusted (pooled scale)", unseen)
        for k, b in enumerate(self.batches_):
            rows = labels == b
            out[rows] = (s[rows] - self.gamma_[k]) / np.sqrt(self.delta_[k])
        return pd.DataFrame(out * sd + self.grand_mean_, index=X.index, columns=X.columns)
