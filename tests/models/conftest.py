"""Synthetic FeatureTables with known signal, and one shared fit of every arm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rccgrade.models.arms import ArmsResult, fit_arms
from rccgrade.models.settings import ModelSettings
from rccgrade.models.split import make_split, train_test_ids

FAST: dict[str, Any] = {
    "param_grids": {
        "logistic": {"C": [1.0]},
        "svm": {"C": [1.0]},
        "random_forest": {"max_depth": [3], "n_estimators": [50]},
        "xgboost": {"max_depth": [2], "n_estimators": [50]},
        "lightgbm": {"num_leaves": [4], "n_estimators": [50]},
    },
    "cv_folds": 3,
    "selection": {"lasso_cs": 8, "lasso_cv": 3},
}
"""Settings that keep tuning cheap in tests (one candidate per grid, 3 folds, short LASSO path)."""


def fast_settings(**overrides: Any) -> ModelSettings:
    """ModelSettings with FAST defaults, ``overrides`` applied on top."""
    data = {**FAST, **overrides}
    if "selection" in overrides:
        data["selection"] = {**FAST["selection"], **overrides["selection"]}
    return ModelSettings(**data)


def _signal_table(seed: int = 0, n: int = 400, n_rad: int = 40, n_deep: int = 30) -> tuple[pd.DataFrame, pd.Series]:
    """Clinical, radiomics and deep features each carrying part of an independent signal.

    P(high grade) = logistic(−0.7 + 1.2·age_z + 1.2·rad0 + 0.8·rad1 + 1.2·deep0 + 0.8·deep1); every
    other feature is noise. No single source holds more than about a third of the signal, so
    feature-level fusion must beat each single source.
    """
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    clin = rng.normal(size=(n, 3))
    rad = rng.normal(size=(n, n_rad))
    deep = rng.normal(size=(n, n_deep))
    logit = -0.7 + 1.2 * clin[:, 0] + 1.2 * rad[:, 0] + 0.8 * rad[:, 1] + 1.2 * deep[:, 0] + 0.8 * deep[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    cols: dict[str, Any] = {
        "clin:age": 60 + 10 * clin[:, 0],
        "clin:size": clin[:, 1],
        "clin:sex": pd.Categorical(np.where(clin[:, 2] > 0, "M", "F")),
    }
    cols.update({f"rad:arterial:f{j:03d}": rad[:, j] for j in range(n_rad)})
    cols.update({f"deep:box:f{j:04d}": deep[:, j] for j in range(n_deep)})
    table = pd.DataFrame(cols, index=ids)
    table.loc[ids[:7], "clin:size"] = np.nan  # missing values are imputed inside the pipeline
    return table, pd.Series(y, index=ids, name="high_grade")


@pytest.fixture(scope="session")
def make_table() -> Callable[..., tuple[pd.DataFrame, pd.Series]]:
    """Factory of synthetic FeatureTables with split signal (see :func:`_signal_table`)."""
    return _signal_table


@pytest.fixture(scope="session")
def signal_fit() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, ArmsResult]:
    """Every arm fitted once on a 400-patient synthetic table (seed 0, 7:3 split)."""
    table, y = _signal_table(seed=0)
    split = make_split(y, seed=0)
    train, _ = train_test_ids(split)
    settings = fast_settings(arms=["clinical", "radiomics", "deep:*", "combined", "stacked"])
    return table, y, split, fit_arms(table, y, train, settings, seed=0)


@pytest.fixture(scope="session")
def fast() -> Callable[..., ModelSettings]:
    """Factory of cheap ModelSettings (see :data:`FAST`)."""
    return fast_settings


def source_blocks(seed: int = 0, n: int = 240, n_noise: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    """Clinical (age) and radiomics (two features) carry the signal; ``deep:noise`` is pure noise."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    a, b, c = rng.normal(size=(3, n))
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.4 + 1.2 * a + 1.2 * b + 0.9 * c)))).astype(int)
    cols: dict[str, Any] = {"clin:age": 60 + 10 * a, "clin:bmi": 25 + 3 * rng.normal(size=n)}
    rad = rng.normal(size=(n, 20))
    rad[:, 0], rad[:, 1] = b, c
    cols.update({f"rad:arterial:f{j:03d}": rad[:, j] for j in range(20)})
    cols.update({f"deep:noise:f{j:04d}": rng.normal(size=n) for j in range(n_noise)})
    return pd.DataFrame(cols, index=ids), pd.Series(y, index=ids, name="high_grade")


def fusion_settings(fast: Callable[..., Any], **kw: Any) -> ModelSettings:
    """FAST settings of a ``combined`` arm over clinical, radiomics and ``deep:*`` (a cheap univariate +
    correlation chain per source), ``kw`` (e.g. ``combined_selection``) applied on top."""
    base: dict[str, Any] = {
        "arms": ["combined"],
        "combined_sources": ["clinical", "radiomics", "deep:*"],
        "selection": {"steps": ["near_constant", "univariate", "correlation"], "univariate_min_features": 4},
    }
    return fast(**{**base, **kw})
