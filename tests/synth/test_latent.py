"""The truth model: prevalence, oracle AUC, spread of the grade signal, clinical realism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rccgrade.synth.latent import (
    CLINICAL_COLUMNS,
    COEFFICIENTS,
    INTERCEPT,
    LATENT_FACTORS,
    draw_patient,
    sample_truth,
)


@pytest.fixture(scope="module")
def truth300() -> pd.DataFrame:
    return sample_truth(300, seed=0)


def _expected_auc(p: np.ndarray) -> float:
    """AUC of p expected over the Bernoulli outcomes (naive O(n²) pair sum, ties count half)."""
    num = 0.0
    den = 0.0
    for i in range(len(p)):
        w = p[i] * (1.0 - p)
        w[i] = 0.0
        num += float(np.sum(w * ((p[i] > p) + 0.5 * (p[i] == p))))
        den += float(np.sum(w))
    return num / den


def test_prevalence_about_35_percent(truth300: pd.DataFrame) -> None:
    assert 0.30 <= truth300["p_high"].mean() <= 0.40
    assert 0.27 <= truth300["high_grade"].mean() <= 0.43


def test_oracle_auc_in_range(truth300: pd.DataFrame) -> None:
    expected = _expected_auc(truth300["p_high"].to_numpy())
    assert 0.85 <= expected <= 0.90
    realised = roc_auc_score(truth300["high_grade"], truth300["p_high"])
    assert 0.85 <= realised <= 0.92


def test_each_factor_informative_none_sufficient(truth300: pd.DataFrame) -> None:
    oracle = roc_auc_score(truth300["high_grade"], truth300["p_high"])
    for name in LATENT_FACTORS:
        auc = roc_auc_score(truth300["high_grade"], truth300[f"z_{name}"])
        assert auc > 0.55, name
        assert auc < oracle - 0.08, name


def test_p_high_is_the_documented_logistic_model(truth300: pd.DataFrame) -> None:
    lp = INTERCEPT + sum(COEFFICIENTS[n] * truth300[f"z_{n}"] for n in LATENT_FACTORS)
    lp = lp + 0.15 * (truth300["true_age"] - 62.0) / 10.0 + 0.20 * truth300["true_male"]
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-lp)), truth300["p_high"], rtol=1e-12)


def test_grade_consistent_with_high_grade(truth300: pd.DataFrame) -> None:
    assert set(truth300["grade"]) <= {1, 2, 3, 4}
    assert ((truth300["grade"] >= 3).astype(int) == truth300["high_grade"]).all()
    counts = truth300["grade"].value_counts()
    assert all(counts.get(g, 0) >= 10 for g in (1, 2, 3, 4))


def test_clinical_missing_and_correlations() -> None:
    df = sample_truth(600, seed=3)
    clin = df[[f"clin_{c}" for c in CLINICAL_COLUMNS]]
    assert 0.03 <= clin.isna().to_numpy().mean() <= 0.07
    assert set(df["clin_sex"].dropna()) == {"M", "F"}
    assert 0.55 <= (df["clin_sex"] == "M").mean() <= 0.75
    num = df[["clin_crp", "clin_platelets", "clin_haemoglobin", "z_systemic"]].astype(float)
    corr = num.corr(method="spearman")
    assert corr.loc["clin_crp", "z_systemic"] > 0.3
    assert corr.loc["clin_platelets", "z_systemic"] > 0.3
    assert corr.loc["clin_haemoglobin", "z_systemic"] < -0.3
    hb_m = df.loc[df["clin_sex"] == "M", "clin_haemoglobin"].mean()
    hb_f = df.loc[df["clin_sex"] == "F", "clin_haemoglobin"].mean()
    assert hb_m > hb_f + 0.8
    assert df["clin_age"].between(25, 90).all() or df["clin_age"].isna().any()
    size = df["clin_size_cm"].dropna()
    assert size.min() >= 1.2 and size.max() <= 14.5
    assert np.corrcoef(df["diameter_mm"], df["clin_size_cm"].fillna(df["diameter_mm"] / 10))[0, 1] > 0.95


def test_clinical_variables_carry_grade_signal() -> None:
    df = sample_truth(600, seed=4)
    y = df["high_grade"]
    crp = df["clin_crp"].fillna(df["clin_crp"].median())
    assert roc_auc_score(y, crp) > 0.55


def test_draw_is_deterministic_and_per_patient() -> None:
    a = draw_patient(17, 5)
    b = draw_patient(17, 5)
    assert a == b
    assert draw_patient(17, 6).factors != a.factors
    assert draw_patient(18, 5).factors != a.factors
    with pytest.raises(ValueError):
        draw_patient(-1, 0)


def test_misalignment_recorded_and_bounded(truth300: pd.DataFrame) -> None:
    for phase in ("nephrographic", "excretory"):
        t = truth300[[f"{phase}_t{a}_mm" for a in "xyz"]].to_numpy()
        r = truth300[[f"{phase}_r{a}_deg" for a in "xyz"]].to_numpy()
        assert np.abs(t[:, :2]).max() <= 2.5 and np.abs(t[:, 2]).max() <= 6.0
        assert np.abs(r).max() <= 3.0
        assert np.median(np.linalg.norm(t, axis=1)) > 1.5
