"""Table 1: tests checked against naive re-implementations written here (not against the module's own output)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rccgrade.report.settings import ReportSettings
from rccgrade.report.tables import compare_categorical, compare_numeric, format_p, table_one


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(2 * stats.t.sf(abs(t), df))


def _mw_u(a: np.ndarray, b: np.ndarray) -> float:
    # naive U: pairs where a > b plus half the ties
    return float(sum((x > y) + 0.5 * (x == y) for x in a for y in b))


def test_numeric_welch_matches_naive_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(60, 10, 40), rng.normal(66, 14, 25)
    res = compare_numeric(a, b, "ttest")
    assert res.test == "Welch t-test"
    assert res.p_value == pytest.approx(_welch_p(a, b), rel=1e-10)


def test_numeric_mannwhitney_statistic_and_normal_p() -> None:
    rng = np.random.default_rng(1)
    a = np.round(rng.exponential(3, 60), 1)  # ties → asymptotic method
    b = np.round(rng.exponential(4, 45), 1)
    res = compare_numeric(a, b, "mannwhitney")
    assert res.test == "Mann–Whitney U"
    u = _mw_u(a, b)
    n1, n2 = a.size, b.size
    ranks = stats.rankdata(np.concatenate([a, b]))
    _, counts = np.unique(ranks, return_counts=True)
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma  # continuity correction, as SciPy's default
    assert res.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)


def test_auto_picks_mannwhitney_for_skewed_and_ttest_for_normal() -> None:
    rng = np.random.default_rng(2)
    assert compare_numeric(rng.normal(0, 1, 80), rng.normal(0, 1, 80)).test == "Welch t-test"
    assert compare_numeric(rng.lognormal(0, 1.2, 80), rng.lognormal(0, 1.2, 80)).test == "Mann–Whitney U"


def test_categorical_chi2_and_fisher_choice() -> None:
    big = np.array([[30, 20], [25, 35]])
    res = compare_categorical(big)
    assert res.test == "χ² test"
    # naive Yates-corrected chi-square
    n = big.sum()
    exp = np.outer(big.sum(1), big.sum(0)) / n
    chi = (((np.abs(big - exp) - 0.5) ** 2) / exp).sum()
    assert res.p_value == pytest.approx(stats.chi2.sf(chi, 1), rel=1e-10)
    small = np.array([[1, 6], [8, 2]])
    res = compare_categorical(small)
    assert res.test == "Fisher exact"
    # naive two-sided Fisher: sum of hypergeometric probabilities ≤ that of the observed table
    r1, c1, n = small[0].sum(), small[:, 0].sum(), small.sum()
    probs = {k: stats.hypergeom.pmf(k, n, c1, r1) for k in range(max(0, r1 + c1 - n), min(r1, c1) + 1)}
    p_obs = probs[small[0, 0]]
    naive = sum(p for p in probs.values() if p <= p_obs * (1 + 1e-7))
    assert res.p_value == pytest.approx(naive, rel=1e-9)


def test_table_one_rows_counts_and_missing() -> None:
    ids = [f"p{i}" for i in range(10)]
    frame = pd.DataFrame(
        {
            "age": [50, 60, np.nan, 70, 55, 65, 80, 75, 45, 62],
            "sex": pd.Categorical(["M", "F", "M", "M", None, "F", "M", "F", "M", "M"]),
        },
        index=pd.Index(ids, name="patient_id"),
    )
    y = pd.Series([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], index=frame.index)
    t = table_one(frame, y, {"age": "numeric", "sex": "categorical"}, ReportSettings(numeric_test="mannwhitney"))
    assert t.iloc[0]["low"] == "5" and t.iloc[0]["high"] == "5"
    age = t[t["variable"].str.startswith("age")].iloc[0]
    assert age["missing"] == 1
    low_ages = np.array([50, 60, 70, 55])
    assert (
        age["low"] == f"{np.median(low_ages):.1f} [{np.percentile(low_ages, 25):.1f}–{np.percentile(low_ages, 75):.1f}]"
    )
    sex = t[t["variable"].str.startswith("sex")].iloc[0]
    assert sex["missing"] == 1
    f_row = t[t["level"] == "F"].iloc[0]
    # low grade: F once among 4 known sexes; high grade: F twice among 5
    assert f_row["low"] == "1 (25.0)" and f_row["high"] == "2 (40.0)"


def test_format_p() -> None:
    assert format_p(0.0004) == "<0.001"
    assert format_p(0.0312) == "0.031"
    assert format_p(float("nan")) == "—"


def test_binary_numeric_column_is_shown_as_counts() -> None:
    ids = pd.Index([f"p{i}" for i in range(8)], name="patient_id")
    frame = pd.DataFrame({"symptoms": [0, 1, 1, 0, np.nan, 1, 1, 1]}, index=ids, dtype=float)
    y = pd.Series([0, 0, 0, 0, 1, 1, 1, 1], index=ids)
    t = table_one(frame, y, {"symptoms": "numeric"})
    head = t[t["variable"].str.startswith("symptoms")].iloc[0]
    assert head["variable"] == "symptoms, n (%)" and head["test"] == "Fisher exact"
    one = t[t["level"] == "1"].iloc[0]
    assert one["low"] == "2 (50.0)" and one["high"] == "3 (100.0)"
