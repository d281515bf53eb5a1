"""Nomogram: total points mapped back reproduce the fitted model's probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rccgrade.errors import StatsError
from rccgrade.stats import build_nomogram, nice_ticks, nomogram_from_estimator, nomogram_table, ranges_from_data


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, np.ndarray, object]:
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(
        {
            "age": rng.normal(60, 10, n),
            "size_cm": rng.gamma(4, 1.2, n),
            "male": rng.integers(0, 2, n).astype(float),
            "enhancement_hu": rng.normal(120, 30, n),
        }
    )
    lp = -6 + 0.03 * X.age + 0.5 * X.size_cm + 0.4 * X.male - 0.01 * X.enhancement_hu
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0)).fit(X, y)
    return X, y, model


def test_points_map_back_to_model_probability(fitted: tuple[pd.DataFrame, np.ndarray, object]) -> None:
    X, _, model = fitted
    nomo = nomogram_from_estimator(model, list(X.columns), ranges_from_data(X))
    pts = nomo.points(X.iloc[:25])
    np.testing.assert_allclose(
        nomo.probability_from_points(pts["total"].to_numpy()), model.predict_proba(X.iloc[:25])[:, 1], atol=1e-6
    )
    # the max-effect predictor spans exactly 0–100 points, the others less
    assert nomo.max_points.max() == pytest.approx(100.0)
    assert (nomo.max_points <= 100 + 1e-9).all()
    assert (pts.drop(columns="total").to_numpy() >= -1e-9).all()
    # independent reconstruction: points of one predictor are linear in original units
    lr = model[-1]
    sc = model[0]
    b = lr.coef_[0] / sc.scale_
    j = list(X.columns).index("size_cm")
    d = pts["size_cm"].iloc[1] - pts["size_cm"].iloc[0]
    assert d == pytest.approx(b[j] * (X.size_cm.iloc[1] - X.size_cm.iloc[0]) / nomo.lp_per_point, rel=1e-9)


def test_binary_predictor_is_categorical_and_table(fitted: tuple[pd.DataFrame, np.ndarray, object]) -> None:
    X, _, model = fitted
    nomo = nomogram_from_estimator(model, list(X.columns), ranges_from_data(X), labels={"size_cm": "Size (cm)"})
    assert nomo.levels[list(X.columns).index("male")] == (0.0, 1.0)
    tab = nomogram_table(nomo)
    assert set(tab.axis) == {"age", "size_cm", "male", "enhancement_hu", "probability"}
    assert tab.loc[tab.axis == "male", "value"].tolist() == [0.0, 1.0]
    assert (tab.loc[tab.axis == "size_cm", "label"] == "Size (cm)").all()
    prob = tab[tab.axis == "probability"]
    np.testing.assert_allclose(nomo.probability_from_points(prob.points.to_numpy()), prob.value, atol=1e-12)
    assert prob.points.between(-1e-9, nomo.max_points.sum() + 1e-9).all()


def test_build_without_scaler_and_errors() -> None:
    nomo = build_nomogram([0.5, -2.0], -1.0, ["a", "b"], {"a": (0, 10), "b": (0, 1)})
    # a spans |0.5|*10 = 5 logits, b spans 2 logits -> a gets 100 points, b 40, and b is protective (0 at b=1)
    np.testing.assert_allclose(nomo.max_points, [100, 40])
    pts = nomo.points(np.array([[10.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(pts["total"], [140, 0])
    np.testing.assert_allclose(nomo.predict_proba(np.array([[4.0, 0.5]])), 1 / (1 + np.exp(-(-1 + 2 - 1))))
    with pytest.raises(StatsError, match="no range"):
        build_nomogram([1.0], 0.0, ["a"], {})
    with pytest.raises(StatsError, match="coefficients"):
        build_nomogram([1.0, 2.0], 0.0, ["a"], {"a": (0, 1)})
    with pytest.raises(StatsError, match="zero effect"):
        build_nomogram([0.0], 0.0, ["a"], {"a": (0, 1)})


def test_refuses_non_linear_pipelines() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    model = make_pipeline(PCA(2), LogisticRegression()).fit(X, y)
    with pytest.raises(StatsError, match="not a standardiser"):
        nomogram_from_estimator(model, ["a", "b", "c"], {"a": (0, 1), "b": (0, 1), "c": (0, 1)})


def test_nice_ticks() -> None:
    np.testing.assert_allclose(nice_ticks(0, 100, 6), [0, 20, 40, 60, 80, 100])
    np.testing.assert_allclose(nice_ticks(31.7, 88.2, 6), [40, 60, 80])
    np.testing.assert_allclose(nice_ticks(36.0, 80.0, 2), [50, 75])  # at least two round ticks
    assert nice_ticks(-0.5, 0.5, 3).tolist() == [-0.5, 0.0, 0.5] and str(nice_ticks(-1, 1, 3)[1]) == "0.0"
