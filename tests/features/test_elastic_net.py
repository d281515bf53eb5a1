"""Elastic-net LassoSelector against an independent scikit-learn fit at the chosen penalty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from rccgrade.errors import ModelError
from rccgrade.features.selection import LassoSelector


def _twins(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 300
    base = rng.normal(size=n)
    X = np.column_stack([base + rng.normal(scale=0.1, size=n), base + rng.normal(scale=0.1, size=n)])
    X = np.column_stack([X, rng.normal(size=(n, 20))])
    y = (rng.random(n) < 1 / (1 + np.exp(-1.5 * base))).astype(int)
    return pd.DataFrame(X, columns=[f"rad:arterial:f{j:02d}" for j in range(X.shape[1])]), y


def test_elastic_net_coefficients_equal_an_independent_fit_at_the_chosen_c() -> None:
    X, y = _twins()
    sel = LassoSelector(Cs=8, cv=5, l1_ratio=0.3, random_state=0).fit(X, y)
    arr = X.to_numpy()
    z = (arr - arr.mean(0)) / arr.std(0)
    ref = LogisticRegression(
        C=sel.C_, l1_ratio=0.3, solver="saga", class_weight="balanced", max_iter=20000, tol=1e-8
    ).fit(z, y)
    np.testing.assert_allclose(sel.coef_, ref.coef_.ravel(), atol=2e-2)
    # the L1 share matters: pure LASSO at the same C gives other coefficients
    lasso = LogisticRegression(C=sel.C_, l1_ratio=1.0, solver="liblinear", class_weight="balanced").fit(z, y)
    assert np.abs(lasso.coef_.ravel() - sel.coef_).max() > 0.05


def test_elastic_net_keeps_both_near_copies() -> None:
    X, y = _twins(1)
    enet = LassoSelector(Cs=8, cv=5, l1_ratio=0.2, random_state=0).fit(X, y)
    assert {"rad:arterial:f00", "rad:arterial:f01"} <= set(enet.get_feature_names_out())
    assert enet.coef_[0] > 0 and enet.coef_[1] > 0


def test_l1_ratio_out_of_range_is_refused() -> None:
    X, y = _twins()
    with pytest.raises(ModelError, match="l1_ratio"):
        LassoSelector(l1_ratio=0.0).fit(X, y)
