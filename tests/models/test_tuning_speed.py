"""Speed paths of the models stage give exactly the numbers of the plain paths."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV

from rccgrade.models.arms import build_arm, fit_arms
from rccgrade.models.split import make_split, train_test_ids
from rccgrade.models.tuning import FoldCachedSearch, make_search, stratified_folds

from .conftest import fast_settings


def test_fold_cached_search_equals_grid_search(make_table: Callable) -> None:
    table, y = make_table(seed=4, n=200)
    settings = fast_settings(arms=["radiomics"])
    est = build_arm("radiomics", list(table.columns), settings, seed=4)
    grid = {"clf__C": [0.01, 0.1, 1.0, 10.0]}
    folds = stratified_folds(y, 3, 4)
    cached = make_search(est, grid, folds, scoring="roc_auc", seed=4)
    assert isinstance(cached, FoldCachedSearch)
    cached.fit(table, y)
    ref = GridSearchCV(est, grid, cv=folds, scoring="roc_auc", refit=True).fit(table, y)
    np.testing.assert_array_equal(cached.cv_scores_.mean(axis=1), ref.cv_results_["mean_test_score"])
    assert cached.best_params_ == ref.best_params_
    np.testing.assert_array_equal(cached.predict_proba(table), ref.predict_proba(table))
    # a grid touching the selection falls back to GridSearchCV (the features differ between candidates)
    other = make_search(est, {**grid, "features__n_jobs": [1]}, folds)
    assert isinstance(other, GridSearchCV)


def test_fold_cached_search_ties_take_the_first_candidate(make_table: Callable) -> None:
    table, y = make_table(seed=5, n=150)
    est = build_arm("clinical", list(table.columns), fast_settings(arms=["clinical"]), seed=5)
    grid = {"clf__C": [1.0, 1.0 + 1e-12, 0.5]}  # first two give the same fold scores
    folds = stratified_folds(y, 3, 5)
    cached = FoldCachedSearch(est, grid, folds).fit(table, y)
    ref = GridSearchCV(est, grid, cv=folds, scoring="roc_auc").fit(table, y)
    assert cached.best_params_ == ref.best_params_


def test_one_and_two_workers_give_identical_numbers(make_table: Callable) -> None:
    table, y = make_table(seed=6, n=160)
    train, _ = train_test_ids(make_split(y, seed=6))
    settings = fast_settings(
        arms=["clinical", "radiomics", "deep:*", "combined", "stacked"],
        param_grids={"logistic": {"C": [0.1, 1.0]}},
    )
    one = fit_arms(table, y, train, settings, seed=6, n_jobs=1)
    two = fit_arms(table, y, train, settings, seed=6, n_jobs=2)
    assert one.arms == two.arms
    for frame in ("train_proba", "oof_proba", "test_proba"):
        pd.testing.assert_frame_equal(getattr(one, frame), getattr(two, frame), check_exact=True)
    assert one.best_params == two.best_params
    assert one.thresholds == two.thresholds
