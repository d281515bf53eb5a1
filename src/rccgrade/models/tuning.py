"""Hyper-parameter tuning by stratified cross-validation on the training patients only.

The whole pipeline (imputation, selection, scaling, classifier) is refitted in every fold, so the
selection cannot see the validation fold. A grid with a single candidate skips the search entirely.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, StratifiedKFold, cross_val_predict

from rccgrade.errors import ModelError

log = logging.getLogger(__name__)


def stratified_folds(y: Any, n_splits: int, seed: int) -> StratifiedKFold:
    """Shuffled stratified k-fold with ``n_splits`` reduced to the minority class size if needed.

    Raises:
        ModelError: fewer than 2 patients in a class.
    """
    counts = np.bincount(np.asarray(y).astype(np.int64), minlength=2)
    k = int(min(n_splits, counts.min()))
    if k < 2:
        raise ModelError(
            f"cross-validation needs at least 2 training patients of each class; got {counts.tolist()} (low, high)"
        )
    if k < n_splits:
        log.warning("only %d patients in the smaller class: using %d folds instead of %d", counts.min(), k, n_splits)
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def n_candidates(grid: dict[str, list[Any]]) -> int:
    """Number of combinations in a grid."""
    n = 1
    for values in grid.values():
        n *= max(len(values), 1)
    return n


def make_search(
    estimator: BaseEstimator,
    grid: dict[str, list[Any]],
    cv: StratifiedKFold,
    *,
    search: str = "grid",
    n_iter: int = 20,
    scoring: str = "roc_auc",
    seed: int = 0,
) -> BaseEstimator:
    """An unfitted estimator that tunes ``estimator`` over ``grid`` when fitted.

    A grid with one candidate (or none) returns the estimator with those parameters set (no search).
    A random search draws ``n_iter`` candidates with ``seed``; when the grid holds at most ``n_iter``
    candidates the exhaustive grid search is used instead.
    """
    if n_candidates(grid) <= 1:
        params = {k: v[0] for k, v in grid.items() if v}
        return clone(estimator).set_params(**params)
    common: dict[str, Any] = {"scoring": scoring, "cv": cv, "refit": True, "n_jobs": 1, "error_score": "raise"}
    if search == "random" and n_candidates(grid) > n_iter:
        return RandomizedSearchCV(clone(estimator), grid, n_iter=n_iter, random_state=seed, **common)
    return GridSearchCV(clone(estimator), grid, **common)


def fit_tuned(search: BaseEstimator, X: pd.DataFrame, y: pd.Series) -> tuple[BaseEstimator, dict[str, Any]]:
    """Fit a search (or plain estimator) and return the final fitted estimator and its chosen parameters."""
    fitted = search.fit(X, y)
    if isinstance(fitted, (GridSearchCV, RandomizedSearchCV)):
        return fitted.best_estimator_, dict(fitted.best_params_)
    return fitted, {}


def oof_probabilities(search: BaseEstimator, X: pd.DataFrame, y: pd.Series, cv: StratifiedKFold) -> np.ndarray:
    """Out-of-fold probability of the positive class for each training patient.

    ``search`` is refitted (tuning included when it is a search object) on each training fold and
    predicts the held-out fold.
    """
    proba = cross_val_predict(search, X, y, cv=cv, method="predict_proba", n_jobs=1)
    return np.asarray(proba)[:, 1]
