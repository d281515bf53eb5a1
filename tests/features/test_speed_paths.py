"""The fast paths of the selection steps give exactly the numbers of the stock/naive computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold

from rccgrade.features.scores import neg_log_loss_binary
from rccgrade.features.selection import LassoSelector, NearConstantFilter, TabularPreprocessor


@pytest.mark.parametrize("scale", [0.1, 1.0, 40.0])  # 40: probabilities hit the [eps, 1 - eps] clip
def test_neg_log_loss_binary_equals_the_stock_scorer(scale: float) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 6)) * scale
    y = (X[:, 0] + rng.normal(size=80) * 0.5 > 0).astype(np.int64)
    model = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    X_new, y_new = rng.normal(size=(37, 6)) * scale, rng.integers(0, 2, size=37)
    stock = get_scorer("neg_log_loss")(model, X_new, y_new)
    assert neg_log_loss_binary(model, X_new, y_new) == stock  # bit for bit: the C selection depends on it


def _table(seed: int, n: int = 150, p: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = (X[:, 0] - 0.8 * X[:, 1] + rng.normal(size=n) > 0.4).astype(np.int64)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    return pd.DataFrame(X * 3 + 1, index=ids, columns=[f"rad:arterial:f{j:03d}" for j in range(p)]), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lasso_selector_equals_logistic_regression_cv_with_the_stock_log_loss(seed: int) -> None:
    table, y = _table(seed)
    sel = LassoSelector(Cs=12, cv=4, random_state=seed).fit(table, y)
    z = table.to_numpy()
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    ref = LogisticRegressionCV(
        Cs=list(np.logspace(-3, 1, 12)),
        l1_ratios=(1.0,),
        cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=seed),
        solver="liblinear",
        scoring="neg_log_loss",
        class_weight="balanced",
        max_iter=5000,
        random_state=seed,
        use_legacy_attributes=False,
    ).fit(z, y)
    ref_c = float(np.ravel(ref.C_)[0])
    chosen = sel.C_
    assert chosen == ref_c
    np.testing.assert_array_equal(sel.coef_, np.ravel(ref.coef_))


def test_near_constant_filter_equals_a_per_column_unique_count() -> None:
    rng = np.random.default_rng(5)
    n = 60
    cols = {
        "a": rng.integers(0, 2, size=n).astype(float),  # balanced binary: kept
        "b": np.r_[np.ones(58), np.zeros(2)],  # 58/60 = 0.967 > 0.95: dropped
        "c": np.r_[np.ones(57), np.zeros(3)],  # 57/60 = 0.95: kept (≤)
        "d": np.full(n, 2.5),  # constant: dropped
        "e": rng.normal(size=n),
        "f": np.r_[np.full(30, -0.0), np.full(28, 0.0), np.arange(2.0) + 1],  # -0 and 0 are one value: dropped
        "g": np.r_[rng.integers(0, 3, size=n - 1).astype(float), 7.0],
    }
    frame = pd.DataFrame(cols)
    got = NearConstantFilter(max_frequency=0.95).fit(frame).get_support()
    ref = []
    for c in frame.columns:  # the former loop: np.unique per column
        col = frame[c].to_numpy()
        ref.append(bool(col.var() > 0 and np.unique(col, return_counts=True)[1].max() / n <= 0.95))
    assert got.tolist() == ref
    assert got.tolist() == [True, False, True, False, True, False, True]


def test_tabular_preprocessor_medians_and_dropped_columns() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, 10.0],
            "gone": [np.nan] * 4,
            "y": np.array([0.5, 0.25, np.nan, 1.0], dtype=np.float32),
        }
    )
    pre = TabularPreprocessor().fit(frame)
    assert pre.numeric_ == ["x", "y"]
    assert pre.medians_ == {"x": 3.0, "y": 0.5}
    assert isinstance(pre.medians_["y"], float)
    np.testing.assert_array_equal(pre.transform(frame)["x"].to_numpy(), [1.0, 3.0, 3.0, 10.0])
