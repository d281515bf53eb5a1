"""The training size against the folds: the rule of :mod:`rccgrade.study.preflight` agrees with what fitting
actually needs (checked at the boundary with the real :func:`rccgrade.models.arms.fit_arms`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rccgrade.errors import ConfigError, RccgradeError
from rccgrade.models.arms import fit_arms
from rccgrade.models.settings import ModelSettings
from rccgrade.study.preflight import check_cohort_size, fits_folds, min_per_class


def _table(n_low: int, n_high: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n_low + n_high)]
    y = pd.Series([0] * n_low + [1] * n_high, index=pd.Index(ids, name="patient_id"))
    X = pd.DataFrame(rng.normal(size=(len(ids), 6)) + y.to_numpy()[:, None], index=y.index)
    X.columns = [f"rad:arterial:original_firstorder_F{i}" for i in range(6)]
    return X, y


@pytest.mark.parametrize(
    "settings",
    [
        ModelSettings(arms=["radiomics"]),  # the defaults: 5 folds, nested out-of-fold tuning, LASSO
        ModelSettings(arms=["radiomics"], cv_folds=3, nested_oof=False),
    ],
)
def test_the_minimum_per_class_is_exactly_what_fitting_needs(settings: ModelSettings) -> None:
    settings.selection.univariate_min_features = 2
    need = min_per_class(settings)
    X, y = _table(12, need)
    fit_arms(X, y, list(X.index), settings, seed=0)  # enough: fits
    assert not fits_folds(need - 1, settings)
    X, y = _table(12, need - 1)
    with pytest.raises((RccgradeError, ValueError)):  # one fewer: fitting itself fails
        fit_arms(X, y, list(X.index), settings, seed=0)


def test_a_twelve_patient_cohort_with_default_nested_oof_is_refused_with_the_numbers() -> None:
    ids = [f"P{i:02d}" for i in range(12)]
    labels = pd.Series([0] * 10 + [1] * 2, index=ids, dtype=float)
    with pytest.raises(ConfigError) as info:
        check_cohort_size(labels, pd.Series(np.nan, index=ids), ModelSettings(), seed=0)
    text = str(info.value)
    assert "too small for the folds" in text and "8 training patients hold 7 low-grade and 1 high-grade" in text
    assert f"at least {min_per_class(ModelSettings())} of each grade" in text and "cv_folds = 5" in text
    # a large enough cohort passes
    ids = [f"P{i:02d}" for i in range(40)]
    labels = pd.Series([0] * 25 + [1] * 15, index=ids, dtype=float)
    check_cohort_size(labels, pd.Series(np.nan, index=ids), ModelSettings(), seed=0)
