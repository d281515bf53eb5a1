"""Contract of stats.roc beyond the reference numbers: result fields, defaults, edge cases and messages.

Written to kill the non-equivalent mutants ``make mutation`` found in ``stats/roc.py`` (bench/mutation.py):
every field a caller reads, every documented default, the single-positive / single-negative DeLong
edge cases, the clipping of the normal CI, the unstratified bootstrap against a loop, and the exact
user-facing error messages.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rccgrade.errors import StatsError
from rccgrade.stats import (
    auc,
    auc_ci,
    bootstrap_auc,
    compare_models,
    delong,
    delong_matrix,
    delong_test,
    delong_test_unpaired,
    holm,
    roc_ci_band,
    roc_curve_points,
)

Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1])
S1 = np.array([0.9, 0.8, 0.35, 0.6, 0.3, 0.5, 0.2, 0.4, 0.1, 0.45, 0.7, 0.55])
S2 = np.array([0.5, 0.9, 0.4, 0.3, 0.6, 0.2, 0.1, 0.8, 0.3, 0.7, 0.4, 0.65])


def _raises(exact: str):  # type: ignore[no-untyped-def]
    return pytest.raises(StatsError, match="^" + re.escape(exact))


def test_test_results_carry_every_field() -> None:
    t = delong_test(Y, S1, S2)
    a1, a2 = auc(Y, S1), auc(Y, S2)
    assert (t.auc_1, t.auc_2) == (pytest.approx(a1), pytest.approx(a2))
    assert t.difference == pytest.approx(a1 - a2) and t.se > 0 and t.paired is True
    assert t.z == pytest.approx((a1 - a2) / t.se)
    u = delong_test_unpaired(Y, S1, Y[:10], S2[:10])
    assert (u.auc_1, u.auc_2) == (pytest.approx(a1), pytest.approx(auc(Y[:10], S2[:10])))
    assert u.difference == pytest.approx(u.auc_1 - u.auc_2) and u.paired is False
    assert u.se == pytest.approx(np.sqrt(delong(Y, S1).variances[0] + delong(Y[:10], S2[:10]).variances[0]))


def test_auc_ci_fields_and_defaults() -> None:
    d = auc_ci(Y, S1)
    assert (d.method, d.level) == ("delong", 0.95)
    b = auc_ci(Y, S1, method="bootstrap")
    assert (b.method, b.level) == ("bootstrap", 0.95)
    explicit = auc_ci(Y, S1, method="bootstrap", n_bootstrap=2000, seed=0, stratified=True)
    assert (b.lower, b.upper, b.se) == (explicit.lower, explicit.upper, explicit.se)  # pROC's boot.n = 2000
    np.testing.assert_array_equal(
        bootstrap_auc(Y, S1), bootstrap_auc(Y, S1, n_bootstrap=2000, seed=0, stratified=True, chunk=256)
    )
    assert bootstrap_auc(Y, S1).shape == (2000, 1)
    # unstratified intervals use unstratified replicates
    u = auc_ci(Y, S1, method="bootstrap", n_bootstrap=300, seed=3, stratified=False)
    reps = bootstrap_auc(Y, S1, n_bootstrap=300, seed=3, stratified=False)[:, 0]
    reps = reps[np.isfinite(reps)]
    np.testing.assert_allclose([u.lower, u.upper], np.quantile(reps, [0.025, 0.975]), atol=1e-12)
    strat = auc_ci(Y, S1, method="bootstrap", n_bootstrap=300, seed=3, stratified=True)
    assert (strat.lower, strat.se) != (u.lower, u.se)
    # two replicates are enough for an interval, one is not
    assert (
        auc_ci(Y, S1, method="bootstrap", n_bootstrap=2).lower <= auc_ci(Y, S1, method="bootstrap", n_bootstrap=2).upper
    )
    with _raises("too few valid bootstrap replicates for a CI; use stratified=True or more patients"):
        auc_ci(Y, S1, method="bootstrap", n_bootstrap=1)
    with _raises("unknown CI method 'exact'; use 'delong' or 'bootstrap'"):
        auc_ci(Y, S1, method="exact")  # type: ignore[arg-type]


def test_normal_ci_is_clipped_to_the_unit_interval() -> None:
    y = np.r_[np.ones(6), np.zeros(6)].astype(int)
    s = np.r_[[0.9, 0.8, 0.7, 0.6, 0.5, 0.15], [0.4, 0.3, 0.2, 0.1, 0.05, 0.2]]
    ci = auc_ci(y, s)
    assert ci.auc + 1.959963984540054 * ci.se > 1  # unclipped it would leave [0, 1]
    assert ci.upper == 1.0 and 0 < ci.lower < ci.auc


def test_single_positive_or_negative_delong() -> None:
    """One positive (or negative): that class's structural covariance is 0 by convention, not NaN."""
    y = np.array([1, 0, 0, 0, 0])
    s = np.array([[0.6, 0.2, 0.7, 0.1, 0.3], [0.5, 0.6, 0.1, 0.2, 0.3]])
    res = delong(y, s)
    v01 = np.array([[float(s[r, 0] > s[r, j]) + 0.5 * (s[r, 0] == s[r, j]) for j in range(1, 5)] for r in range(2)])
    np.testing.assert_allclose(res.covariance, np.cov(v01) / 4, atol=1e-15)
    y2 = 1 - np.array([1, 0, 0, 0])
    s2 = np.array([[0.6, 0.2, 0.7, 0.1], [0.5, 0.6, 0.1, 0.2]])
    res2 = delong(y2, s2)
    v10 = np.array([[float(s2[r, i] > s2[r, 0]) + 0.5 * (s2[r, i] == s2[r, 0]) for i in range(1, 4)] for r in range(2)])
    np.testing.assert_allclose(res2.covariance, np.cov(v10) / 3, atol=1e-15)
    assert np.isfinite(res.covariance).all() and np.isfinite(res2.covariance).all()


def test_unstratified_bootstrap_equals_a_loop_and_warns_nothing() -> None:
    y = np.array([1, 0, 0, 1, 0, 0])
    s = np.array([0.9, 0.1, 0.4, 0.35, 0.8, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # single-class replicates give NaN without a RuntimeWarning
        reps = bootstrap_auc(y, s, n_bootstrap=300, seed=2, stratified=False, chunk=7)[:, 0]
    g = np.random.default_rng(2)
    loop, n_pos = [], []
    for start in range(0, 300, 7):
        idx = g.integers(0, 6, size=(min(7, 300 - start), 6))
        for row in idx:
            yb = y[row]
            n_pos.append(int(yb.sum()))
            loop.append(auc(yb, s[row]) if 0 < yb.sum() < yb.size else np.nan)
    # the draws cover no positive, one positive, one negative and (so) every edge of the NaN rule
    assert {0, 1, 5} <= set(n_pos)
    np.testing.assert_allclose(reps, loop, atol=1e-12)
    assert bootstrap_auc(y, s, n_bootstrap=1).shape == (1, 1)
    with _raises("n_bootstrap must be at least 1; got 0"):
        bootstrap_auc(y, s, n_bootstrap=0)


def test_compare_models_columns_identical_pairs_and_corrections() -> None:
    table = compare_models(Y, {"a": S1, "b": S2, "same": S1})
    assert list(table.columns) == [
        "model_1", "model_2", "auc_1", "auc_2", "difference", "ci_lower", "ci_upper", "se", "z", "p_value",
        "p_adjusted",
    ]  # fmt: skip
    assert table.auc_1.tolist() == pytest.approx([auc(Y, S1), auc(Y, S1), auc(Y, S2)])
    assert table.auc_2.tolist() == pytest.approx([auc(Y, S2), auc(Y, S1), auc(Y, S1)])
    same = table[(table.model_1 == "a") & (table.model_2 == "same")].iloc[0]
    assert (same.z, same.p_value, same.se) == (0.0, 1.0, 0.0)
    raw = compare_models(Y, {"a": S1, "b": S2, "same": S1}, correction="none")
    np.testing.assert_array_equal(raw.p_adjusted, raw.p_value)
    np.testing.assert_allclose(table.p_adjusted, holm(raw.p_value))
    with _raises("unknown multiple-testing correction 'bonferroni'; use 'holm' or 'none'"):
        compare_models(Y, {"a": S1, "b": S2}, correction="bonferroni")  # type: ignore[arg-type]
    with _raises("compare_models needs at least two models"):
        compare_models(Y, {"a": S1})


def test_delong_matrix_values_names_and_adjustment() -> None:
    scores = {"a": S1, "b": S2, "c": 0.5 * S1 + 0.5 * S2}
    mat = delong_matrix(Y, scores)
    assert mat.index.name == "arm" and list(mat.index) == ["a", "b", "c"] and list(mat.columns) == ["a", "b", "c"]
    table = compare_models(Y, scores)
    raw = compare_models(Y, scores, correction="none")
    for row, r in zip(table.itertuples(), raw.itertuples(), strict=True):
        assert mat.loc[row.model_1, row.model_2] == row.p_adjusted == mat.loc[row.model_2, row.model_1]
        assert delong_matrix(Y, scores, adjusted=False).loc[r.model_1, r.model_2] == r.p_value
    assert not np.allclose(table.p_adjusted, raw.p_value)  # the adjustment is visible
    assert np.isnan(np.diag(mat.to_numpy(dtype=float))).all() and mat.dtypes.eq(float).all()
    two = delong_matrix(Y, {"a": S1, "b": S2})
    assert two.loc["a", "b"] == pytest.approx(delong_test(Y, S1, S2).p_value)
    one = delong_matrix(Y, {"a": S1})
    assert one.dtypes.eq(float).all() and np.isnan(one.iloc[0, 0])


def test_roc_curve_points_columns_and_first_row() -> None:
    pts = roc_curve_points(Y, S1)
    assert list(pts.columns) == ["threshold", "fpr", "tpr", "specificity", "sensitivity"]
    assert pts.threshold.iloc[0] == np.inf
    np.testing.assert_allclose(pts.specificity, 1 - pts.fpr)
    np.testing.assert_array_equal(pts.sensitivity, pts.tpr)


def test_roc_band_defaults_grid_and_first_vertex() -> None:
    band = roc_ci_band(Y, S1, n_bootstrap=50)
    np.testing.assert_allclose(band.fpr, np.arange(101) / 100)
    rng = np.random.default_rng(8)
    yb = rng.integers(0, 2, 300)
    sb = rng.normal(size=300) + yb
    full = roc_ci_band(yb, sb)  # 1000 replicates, seed 0, 101 points (fine-grained enough to tell 1000 from 1001)
    same = roc_ci_band(yb, sb, fpr_grid=np.linspace(0, 1, 101), n_bootstrap=1000, seed=0)
    pd.testing.assert_frame_equal(full, same)
    assert not full.equals(roc_ci_band(yb, sb, n_bootstrap=1001))
    ints = roc_ci_band(Y, S1, fpr_grid=[0, 1], n_bootstrap=20)
    assert ints.fpr.dtype == np.float64
    # the top score is shared by a positive and a negative: at fpr = 0 nothing is called positive
    y = np.array([1, 0, 1, 0, 1, 0])
    s = np.array([0.9, 0.9, 0.7, 0.5, 0.4, 0.1])
    b = roc_ci_band(y, s, fpr_grid=[0.0, 0.5, 1.0], n_bootstrap=30)
    np.testing.assert_allclose(b.tpr, [0.0, 2 / 3, 1.0])
    # the top score is a negative: sensitivity at fpr = 0 is 0 as well
    b2 = roc_ci_band(np.array([0, 1, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]), fpr_grid=[0.0], n_bootstrap=10)
    assert b2.tpr.iloc[0] == 0.0


def test_holm_caps_at_one_and_keeps_order() -> None:
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.04, 0.01, 0.03]), [0.06, 0.03, 0.06])
    assert holm([]).size == 0
    with _raises("p-values must be one-dimensional"):
        holm([[0.1, 0.2]])
    with _raises("p-values contain NaN; cannot adjust"):
        holm([0.1, np.nan])


def test_error_messages_name_the_problem() -> None:
    with _raises("no scores given: pass at least one model's scores"):
        delong(Y, {})
    with _raises("scores must be (n_models, n_patients) or a dict of arrays; got shape (1, 2, 12)"):
        delong(Y, np.zeros((1, 2, 12)))
    with pytest.raises(StatsError, match="score of 'b'"):
        delong(Y, {"a": S1, "b": np.r_[S2[:-1], np.nan]})
    with pytest.raises(StatsError, match="score 1"):
        delong(Y, np.vstack([S1, np.r_[S2[:-1], np.nan]]))
    with _raises(
        "the two models' AUC difference has zero variance (identical or perfectly concordant scores); "
        "DeLong's test is undefined — compare different models"
    ):
        delong_test(Y, S1, S1)
    perfect = np.where(Y == 1, 1.0, 0.0)
    with _raises("both AUCs have zero DeLong variance (perfect separation); the unpaired test is undefined"):
        delong_test_unpaired(Y, perfect, Y, perfect)
    assert sps.norm.sf(0) == 0.5  # (sanity of the library used for p-values above)
