"""Chain fits shared between arms (features.fit_cache) change no number, and only serve identical rows."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from rccgrade.features import fit_cache
from rccgrade.features.selection import SourceUnion, UnivariateFilter
from rccgrade.models import arm_tasks
from rccgrade.models.arms import fit_arms
from rccgrade.models.split import make_split, train_test_ids

from .conftest import fast_settings

FITS: list[int] = []


class CountingFilter(UnivariateFilter):
    """A univariate filter that counts its fits."""

    def fit(self, X: Any, y: Any) -> CountingFilter:
        FITS.append(len(X))
        return super().fit(X, y)


def _union() -> SourceUnion:
    chain = Pipeline(
        [("uni", CountingFilter(min_features=2)), ("scale", StandardScaler().set_output(transform="pandas"))]
    )
    return SourceUnion([("radiomics", "rad:", chain)])


def test_identical_rows_are_fitted_once_and_other_rows_refit(make_table: Callable) -> None:
    table, y = make_table(seed=1, n=120)
    FITS.clear()
    with fit_cache.shared_fits():
        a = _union().fit(table, y)
        b = _union().fit(table, y)  # the same chain on the same rows: served from the cache
        assert FITS == [120]
        c = _union().fit(table.iloc[:100], y.iloc[:100])  # other rows (another fold): fitted anew
        d = _union().fit(table, 1 - y)  # other labels: fitted anew
        moved = table.copy()
        moved.index = [f"q{i}" for i in range(len(moved))]
        _union().fit(moved, y.set_axis(moved.index))  # same values, other patients: fitted anew
        assert FITS == [120, 100, 120, 120]
    pd.testing.assert_frame_equal(a.transform(table), b.transform(table), check_exact=True)
    assert a.transformers_[0][2] is not b.transformers_[0][2]  # each caller gets its own copy
    assert list(c.get_feature_names_out()) != [] and list(d.get_feature_names_out()) != []
    assert fit_cache.cache_size() == 0  # nothing is kept once the block ends
    FITS.clear()
    _union().fit(table, y)
    _union().fit(table, y)
    assert FITS == [120, 120]  # outside a block nothing is cached


@pytest.mark.parametrize("nested_oof", [True, False])
def test_shared_fits_change_no_number(make_table: Callable, monkeypatch: pytest.MonkeyPatch, nested_oof: bool) -> None:
    table, y = make_table(seed=7, n=150)
    train, _ = train_test_ids(make_split(y, seed=7))
    settings = fast_settings(
        arms=["clinical", "radiomics", "deep:*", "combined", "stacked"],
        param_grids={"logistic": {"C": [0.1, 1.0]}},
        nested_oof=nested_oof,
    )
    shared = fit_arms(table, y, train, settings, seed=7, n_jobs=1)
    monkeypatch.setattr(arm_tasks, "shared_fits", contextlib.nullcontext)
    plain = fit_arms(table, y, train, settings, seed=7, n_jobs=1)
    for frame in ("train_proba", "oof_proba", "test_proba"):
        pd.testing.assert_frame_equal(getattr(shared, frame), getattr(plain, frame), check_exact=True)
    assert shared.best_params == plain.best_params
    for arm in shared.arms:
        pd.testing.assert_frame_equal(shared.selected[arm], plain.selected[arm], check_exact=True)


def test_workers_give_the_numbers_of_one_process_without_nested_oof(make_table: Callable) -> None:
    table, y = make_table(seed=8, n=140)
    train, _ = train_test_ids(make_split(y, seed=8))
    settings = fast_settings(arms=["radiomics", "deep:*", "combined"], nested_oof=False)
    one = fit_arms(table, y, train, settings, seed=8, n_jobs=1)
    two = fit_arms(table, y, train, settings, seed=8, n_jobs=2)
    for frame in ("train_proba", "oof_proba", "test_proba"):
        pd.testing.assert_frame_equal(getattr(one, frame), getattr(two, frame), check_exact=True)
    assert np.isfinite(one.oof_proba.to_numpy()).all()
