"""Vectorised ICC against a naive per-feature ANOVA written here, and against Shrout & Fleiss (1979)."""

from __future__ import annotations

import numpy as np
import pytest

from rccgrade.errors import StatsError
from rccgrade.radiomics.icc import icc


def naive_icc(y: list[list[float]]) -> tuple[float, float]:
    """ICC(3,1) and ICC(2,1) of one feature with plain loops (n subjects × k raters)."""
    n = len(y)
    k = len(y[0])
    grand = sum(sum(row) for row in y) / (n * k)
    row_mean = [sum(row) / k for row in y]
    col_mean = [sum(y[i][j] for i in range(n)) / n for j in range(k)]
    ss_rows = 0.0
    for i in range(n):
        ss_rows += k * (row_mean[i] - grand) ** 2
    ss_cols = 0.0
    for j in range(k):
        ss_cols += n * (col_mean[j] - grand) ** 2
    ss_total = 0.0
    for i in range(n):
        for j in range(k):
            ss_total += (y[i][j] - grand) ** 2
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    return icc3, icc2


def test_vectorised_equals_naive_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    n, k, f = 9, 4, 300
    data = rng.integers(0, 5, size=(n, k, f)).astype(float)  # few values: many ties
    data[:, :, : f // 2] += rng.normal(0, 3, size=(n, 1, f // 2))  # some features with subject effects
    data[:, 1, ::7] += 1.5  # rater bias on some features (separates ICC(2,1) from ICC(3,1))
    data[:, :, 5] = data[:, :1, 5]  # perfect agreement
    out = icc(data)
    for j in range(f):
        e3, e2 = naive_icc(data[:, :, j].tolist())
        assert out["icc3_1"][j] == pytest.approx(e3, rel=1e-10, abs=1e-12)
        assert out["icc2_1"][j] == pytest.approx(e2, rel=1e-10, abs=1e-12)
    assert out["icc3_1"][5] == pytest.approx(1.0)


def test_shrout_fleiss_1979_table() -> None:
    """The 6 targets × 4 judges example of Shrout & Fleiss (1979), Table 2: ICC(2,1)=.29, ICC(3,1)=.71."""
    y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    out = icc(y)
    assert round(float(out["icc2_1"][0]), 2) == 0.29
    assert round(float(out["icc3_1"][0]), 2) == 0.71


def test_constant_and_nonfinite_features_are_nan() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, 3, 4))
    data[:, :, 0] = 7.3
    data[2, 1, 1] = np.nan
    data[0, 0, 2] = np.inf
    out = icc(data)
    assert np.isnan(out["icc3_1"][:3]).all() and np.isnan(out["icc2_1"][:3]).all()
    assert np.isfinite(out["icc3_1"][3])


def test_large_offsets_do_not_lose_precision() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(8, 3, 20))
    a = icc(base)
    b = icc(base + 1e6)
    np.testing.assert_allclose(a["icc2_1"], b["icc2_1"], rtol=1e-6)


def test_needs_two_subjects_and_raters() -> None:
    with pytest.raises(StatsError):
        icc(np.zeros((1, 3, 2)))
    with pytest.raises(StatsError):
        icc(np.zeros((4, 1)))


def test_pingouin_cross_check() -> None:
    import pandas as pd
    import pingouin as pg  # pinned in the test extras: missing is a failure, not a skip

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=(7, 3)).astype(float) + rng.normal(0, 2, size=(7, 1))
    long = pd.DataFrame([(i, j, y[i, j]) for i in range(7) for j in range(3)], columns=["subject", "rater", "value"])
    table = pg.intraclass_corr(long, targets="subject", raters="rater", ratings="value").set_index("Type")
    out = icc(y)
    # pingouin 0.7 names: ICC(A,1) = Shrout-Fleiss ICC(2,1), ICC(C,1) = ICC(3,1)
    assert out["icc2_1"][0] == pytest.approx(table.loc["ICC(A,1)", "ICC"], rel=1e-10)
    assert out["icc3_1"][0] == pytest.approx(table.loc["ICC(C,1)", "ICC"], rel=1e-10)
