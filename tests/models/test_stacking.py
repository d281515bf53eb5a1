"""Stacked late fusion: the bounded logistic fit against scikit-learn, and a noise source weighted ≈ 0."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from rccgrade.models.arms import fit_arms
from rccgrade.models.split import make_split, train_test_ids
from rccgrade.models.stacking import NonNegativeLogisticRegression


def _logistic_data(weights: list[float], n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(weights)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + X @ np.asarray(weights))))).astype(int)
    return X, y


@pytest.mark.parametrize("C", [1.0, 0.05, None])
def test_unconstrained_fit_equals_sklearn(C: float | None) -> None:
    X, y = _logistic_data([1.0, -0.8, 0.0, 0.5])
    ours = NonNegativeLogisticRegression(C=C, positive=False).fit(X, y)
    ref = LogisticRegression(C=np.inf if C is None else C, tol=1e-12, max_iter=100000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-5)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=2e-5)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def test_bounds_inactive_when_every_weight_is_positive() -> None:
    X, y = _logistic_data([1.0, 0.6, 0.4], seed=1)
    ours = NonNegativeLogisticRegression(C=1.0).fit(X, y)
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(X, y)
    assert np.all(ref.coef_ > 0.1)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-5)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=2e-5)


def test_active_bound_equals_refit_without_that_column_and_kkt_holds() -> None:
    X, y = _logistic_data([1.0, -1.0, 0.7], seed=2)
    ours = NonNegativeLogisticRegression(C=1.0).fit(X, y)
    w = ours.coef_.ravel()
    assert w[1] == 0.0 and np.all(w >= 0)
    # naive reference: the constrained optimum is the unconstrained fit on the free columns
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(X[:, [0, 2]], y)
    np.testing.assert_allclose(w[[0, 2]], ref.coef_.ravel(), atol=2e-5)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=2e-5)
    # KKT: the loss cannot decrease by raising the bounded weight (gradient ≥ 0 there)
    p = ours.predict_proba(X)[:, 1]
    assert X[:, 1] @ (p - y) + w[1] / 1.0 > 0


def test_refuses_a_bad_penalty() -> None:
    X, y = _logistic_data([1.0])
    with pytest.raises(ValueError, match="C must be"):
        NonNegativeLogisticRegression(C=0.0).fit(X, y)


def _two_sources_and_noise(seed: int, n: int = 300, n_noise: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    """Clinical and radiomics each carry half of the signal; ``deep:noise`` is pure Gaussian noise."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 1.3 * a + 1.3 * b)))).astype(int)
    cols: dict[str, Any] = {"clin:age": 60 + 10 * a, "clin:other": rng.normal(size=n)}
    cols.update({f"rad:arterial:f{j:03d}": (b if j == 0 else rng.normal(size=n)) for j in range(10)})
    cols.update({f"deep:noise:f{j:04d}": rng.normal(size=n) for j in range(n_noise)})
    return pd.DataFrame(cols, index=ids), pd.Series(y, index=ids, name="high_grade")


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_source_gets_weight_below_005(seed: int, fast: Callable[..., Any]) -> None:
    table, y = _two_sources_and_noise(seed)
    train, _ = train_test_ids(make_split(y, seed=seed))
    settings = fast(arms=["clinical", "radiomics", "deep:*", "stacked"], nested_oof=False)
    res = fit_arms(table, y, train, settings, seed=seed)
    weights = res.fusion["stacked"]["stacking_weights"]
    print(seed, weights)
    assert set(weights) == {"clinical", "radiomics", "deep:noise"}
    assert all(w >= 0 for w in weights.values()), weights
    assert weights["deep:noise"] < 0.05, weights
    assert weights["clinical"] > 0.3 and weights["radiomics"] > 0.3, weights
    assert weights == res.models["stacked"].weights_
    described = res.selected["stacked"].set_index("feature")["coefficient"]
    assert described["logit p(deep:noise)"] == pytest.approx(weights["deep:noise"])
