"""Per-patient contributions: exact sums for every classifier, checked against independent recomputations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rccgrade.errors import ModelError
from rccgrade.models.arms import StackedClassifier, build_arm
from rccgrade.models.explain import arm_contribution_summary, contributions, source_share_table

from .conftest import _signal_table, fast_settings


def _fit(arm: str, classifier: str, n: int = 160):
    table, y = _signal_table(seed=1, n=n, n_rad=12, n_deep=8)
    settings = fast_settings(
        classifier=classifier,
        selection={"steps": ["near_constant", "univariate"]},
        combined_selection="union",  # every source in combined, so each source's contributions are checked
    )
    model = build_arm(arm, list(table.columns), settings, seed=0).fit(table, y)
    return table, y, model


def test_logistic_contributions_are_coefficient_times_zscore_and_sum_to_logit() -> None:
    table, _, model = _fit("combined", "logistic")
    c = contributions(model, table, "combined")
    clf = model.named_steps["clf"]
    # independent reference: the scaler's own mean/scale on the imputed, selected raw values
    union = model.named_steps["features"]
    for name, _, chain in union.transformers_:
        pre = chain[:-1].transform(table[union.columns_[name]])
        scaler = chain.named_steps["scale"]
        z = (pre.to_numpy() - scaler.mean_) / scaler.scale_
        cols = list(chain.get_feature_names_out())
        coef = pd.Series(clf.coef_.ravel(), index=list(union.get_feature_names_out()))[cols].to_numpy()
        np.testing.assert_allclose(c.values[cols].to_numpy(), z * coef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.base.to_numpy(), clf.intercept_[0])
    np.testing.assert_allclose(c.output.to_numpy(), model.decision_function(table), rtol=0, atol=1e-10)
    np.testing.assert_allclose(c.probability().to_numpy(), model.predict_proba(table)[:, 1], atol=1e-12)
    assert c.scale == "logit"
    assert {"clinical", "radiomics", "deep:box"} <= set(c.sources.values())
    # imputed clin:size values (first 7 patients) are flagged
    if "clin:size" in c.imputed.columns:
        assert c.imputed["clin:size"].iloc[:7].all() and not c.imputed["clin:size"].iloc[7:].any()


@pytest.mark.parametrize("classifier", ["xgboost", "lightgbm"])
def test_boosted_treeshap_sums_to_margin(classifier: str) -> None:
    table, _, model = _fit("radiomics", classifier)
    c = contributions(model, table, "radiomics")
    p = model.predict_proba(table)[:, 1]
    margin = np.log(p / (1 - p))
    np.testing.assert_allclose(c.output.to_numpy(), margin, atol=1e-5)
    assert c.scale == "logit"
    # the signal features carry more than the noise ones
    mean_abs = c.values.abs().mean()
    assert mean_abs.idxmax() in {"rad:arterial:f000", "rad:arterial:f001"}


def test_random_forest_treeshap_sums_to_probability() -> None:
    table, _, model = _fit("radiomics", "random_forest")
    c = contributions(model, table, "radiomics")
    assert c.scale == "probability"
    np.testing.assert_allclose(c.output.to_numpy(), model.predict_proba(table)[:, 1], atol=1e-6)
    np.testing.assert_allclose(c.probability().to_numpy(), model.predict_proba(table)[:, 1], atol=1e-6)


def test_svm_refuses_rather_than_approximating() -> None:
    table, _, model = _fit("clinical", "svm", n=80)
    with pytest.raises(ModelError, match="no exact per-feature decomposition"):
        contributions(model, table, "clinical")


def test_stacked_contributions_sum_to_meta_logit_with_arm_weights() -> None:
    table, y = _signal_table(seed=2, n=160, n_rad=10, n_deep=6)
    settings = fast_settings(selection={"steps": ["near_constant", "univariate"]})
    arms = [(a, build_arm(a, list(table.columns), settings, seed=0)) for a in ("clinical", "radiomics")]
    rf = fast_settings(classifier="random_forest", selection={"steps": ["near_constant"]})
    arms.append(("deep:box", build_arm("deep:box", list(table.columns), rf, seed=0)))
    stacked = StackedClassifier(arms, cv=3, random_state=0).fit(table, y)
    c = contributions(stacked, table)
    p = stacked.predict_proba(table)[:, 1]
    np.testing.assert_allclose(c.output.to_numpy(), np.log(p / (1 - p)), atol=1e-8)
    w = dict(zip([n for n, _ in stacked.estimators_], stacked.meta_.coef_.ravel(), strict=True))
    # feature-level columns are the arm weight times the arm's own contribution
    rad = contributions(stacked.estimators_[1][1], table, "radiomics")
    feat = rad.values.columns[0]
    np.testing.assert_allclose(c.values[f"[radiomics] {feat}"], w["radiomics"] * rad.values[feat], rtol=1e-12)
    # the random-forest arm has no logit decomposition: one arm-level column
    assert "[deep:box]" in c.values.columns
    assert set(c.sources.values()) == {"clinical", "radiomics", "deep:box"}


def test_summary_shares_sum_to_one_and_rank_signal_first() -> None:
    table, _, model = _fit("combined", "logistic")
    s = arm_contribution_summary(model, table, "combined")
    assert s.features["share"].sum() == pytest.approx(1.0)
    assert s.sources["share"].sum() == pytest.approx(1.0)
    naive = s.contributions.values.abs().mean().sort_values(ascending=False)
    assert s.features["feature"].iloc[0] == naive.index[0]
    table_share = source_share_table({"combined": s})
    np.testing.assert_allclose(table_share.sum(axis=1).to_numpy(), 1.0)
    assert s.contributions.top(str(table.index[0]), n=3).shape[0] == 3


def test_logistic_covariance_matches_statsmodels_wald_covariance_without_penalty() -> None:
    import statsmodels.api as sm

    from rccgrade.models.explain import logistic_covariance, probability_interval

    table, y = _signal_table(seed=3, n=300, n_rad=6, n_deep=4)
    settings = fast_settings(param_grids={"logistic": {"C": [1e8]}}, selection={"steps": ["near_constant"]})
    model = build_arm("clinical", list(table.columns), settings, seed=0)
    model.set_params(clf__C=1e8).fit(table, y)
    cov = logistic_covariance(model, table)
    Z = model.named_steps["features"].transform(table)
    ref = sm.Logit(y.to_numpy(), sm.add_constant(Z.to_numpy())).fit(disp=0)
    np.testing.assert_allclose(cov, ref.cov_params(), rtol=1e-3, atol=1e-5)  # lbfgs vs Newton optimum
    iv = probability_interval(model, cov, table)
    p = model.predict_proba(table)[:, 1]
    assert np.all(iv["lower"].to_numpy() < p) and np.all(p < iv["upper"].to_numpy())
    # the penalty shrinks the covariance: C = 0.01 gives a smaller intercept-free block
    model.set_params(clf__C=0.01).fit(table, y)
    small = logistic_covariance(model, table)
    assert np.all(np.diag(small)[1:] < np.diag(cov)[1:])


def test_pca_components_are_reported_as_components_and_still_sum_exactly() -> None:
    table, y = _signal_table(seed=4, n=160, n_rad=6, n_deep=12)
    settings = fast_settings(selection={"steps": ["near_constant"], "deep_pca": 4})
    model = build_arm("deep:box", list(table.columns), settings, seed=0).fit(table, y)
    c = contributions(model, table, "deep:box")
    assert list(c.values.columns) == [f"deep:box:pc{i:03d}" for i in range(1, 5)]
    np.testing.assert_allclose(c.output.to_numpy(), model.decision_function(table), atol=1e-10)
