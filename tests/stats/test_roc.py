"""ROC/AUC/DeLong against R's pROC (reference numbers from pROC's tests, see tests/data/README.md) and a naive O(m·n)
DeLong written here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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

# pROC v1.19.0.1 reference numbers (pROC's own tests; tests/data/README.md, "roc/").
AUC_S100B = 0.731368563685637
AUC_NDKA = 0.611957994579946
VAR_S100B = 0.00266868245717244
VAR_NDKA = 0.0031908105493913
COV_NDKA_S100B = -0.000756164938056579
CI_NDKA = (0.501244999271703, 0.722670989888189)
Z_NDKA_S100B = -1.39077002573558
P_NDKA_S100B = 0.164295175223054
TOL = 1e-6


@pytest.fixture(scope="module")
def asah(reference_file: Callable[..., Path]) -> pd.DataFrame:
    df = pd.read_csv(reference_file("roc", "aSAH.csv"))
    df["y"] = (df["outcome"] == "Poor").astype(int)
    return df


def test_auc_matches_proc(asah: pd.DataFrame) -> None:
    assert auc(asah.y, asah.s100b) == pytest.approx(AUC_S100B, abs=TOL)
    assert auc(asah.y, asah.ndka) == pytest.approx(AUC_NDKA, abs=TOL)
    assert int(asah.y.sum()) == 41 and len(asah) == 113


def test_delong_variance_covariance_match_proc(asah: pd.DataFrame) -> None:
    res = delong(asah.y, {"ndka": asah.ndka, "s100b": asah.s100b})
    np.testing.assert_allclose(res.aucs, [AUC_NDKA, AUC_S100B], atol=TOL, rtol=0)
    np.testing.assert_allclose(res.variances, [VAR_NDKA, VAR_S100B], atol=1e-12, rtol=1e-8)
    assert res.covariance[0, 1] == pytest.approx(COV_NDKA_S100B, abs=1e-12, rel=1e-8)
    assert res.covariance[1, 0] == res.covariance[0, 1]
    assert (res.n_positive, res.n_negative) == (41, 72)


def test_delong_ci_matches_proc(asah: pd.DataFrame) -> None:
    ci = auc_ci(asah.y, asah.ndka, method="delong", level=0.95)
    assert ci.lower == pytest.approx(CI_NDKA[0], abs=TOL)
    assert ci.upper == pytest.approx(CI_NDKA[1], abs=TOL)
    assert ci.se == pytest.approx(np.sqrt(VAR_NDKA), rel=1e-8)


def test_paired_delong_test_matches_proc(asah: pd.DataFrame) -> None:
    t = delong_test(asah.y, asah.ndka, asah.s100b)
    assert t.z == pytest.approx(Z_NDKA_S100B, abs=TOL)
    assert t.p_value == pytest.approx(P_NDKA_S100B, abs=TOL)
    assert t.paired
    swapped = delong_test(asah.y, asah.s100b, asah.ndka)
    assert swapped.z == pytest.approx(-Z_NDKA_S100B, abs=TOL)
    assert swapped.p_value == pytest.approx(P_NDKA_S100B, abs=TOL)


def test_compare_models_on_asah(asah: pd.DataFrame) -> None:
    table = compare_models(asah.y, {"ndka": asah.ndka, "s100b": asah.s100b, "wfns": asah.wfns})
    assert len(table) == 3
    row = table[(table.model_1 == "ndka") & (table.model_2 == "s100b")].iloc[0]
    assert row.z == pytest.approx(Z_NDKA_S100B, abs=TOL)
    assert row.p_value == pytest.approx(P_NDKA_S100B, abs=TOL)
    # Holm against statsmodels' implementation
    from statsmodels.stats.multitest import multipletests

    np.testing.assert_allclose(table.p_adjusted, multipletests(table.p_value, method="holm")[1], rtol=1e-12)
    mat = delong_matrix(asah.y, {"ndka": asah.ndka, "s100b": asah.s100b, "wfns": asah.wfns})
    assert mat.loc["s100b", "ndka"] == pytest.approx(row.p_adjusted)
    assert np.isnan(mat.loc["wfns", "wfns"])
    assert delong_matrix(asah.y, {"ndka": asah.ndka}).shape == (1, 1)


# pROC's own test suite (tests/testthat/test-roc.test.R, "unpaired roc.test statistic and p are as expected"):
# roc.test(r.x, r.y, paired = FALSE) on aSAH gives D and a p-value from Student's t (Welch–Satterthwaite df).
UNPAIRED_PROC = [
    ("wfns", "s100b", 1.43490640926908, 0.152825378808796),
    ("wfns", "ndka", 3.10125096778969, 0.00220950791756457),
    ("ndka", "s100b", -1.55995743389685, 0.120192832430845),
]


@pytest.mark.parametrize(("a", "b", "d", "p"), UNPAIRED_PROC)
def test_unpaired_delong_matches_proc(asah: pd.DataFrame, a: str, b: str, d: float, p: float) -> None:
    t = delong_test_unpaired(asah.y, asah[a], asah.y, asah[b])
    assert t.z == pytest.approx(d, abs=1e-9)
    assert t.p_value == pytest.approx(p, abs=1e-9)
    assert not t.paired and t.df is not None
    swapped = delong_test_unpaired(asah.y, asah[b], asah.y, asah[a])
    assert swapped.z == pytest.approx(-d, abs=1e-9) and swapped.p_value == pytest.approx(p, abs=1e-9)


def _naive_unpaired(y1: np.ndarray, s1: np.ndarray, y2: np.ndarray, s2: np.ndarray) -> tuple[float, float, float]:
    """D, df and p written out from the formulas (naive DeLong variances, scipy's t)."""
    a1, v1 = _naive_delong(y1, s1[None])
    a2, v2 = _naive_delong(y2, s2[None])
    var1, var2 = v1[0, 0], v2[0, 0]
    d = (a1[0] - a2[0]) / np.sqrt(var1 + var2)
    df = (var1 + var2) ** 2 / (var1**2 / (len(y1) - 1) + var2**2 / (len(y2) - 1))
    return d, df, 2 * sps.t.sf(abs(d), df)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unpaired_delong_is_welch_t_against_a_naive_computation(seed: int) -> None:
    # two independent cohorts of different sizes and class balance, ties included (scores on a coarse grid)
    rng = np.random.default_rng(seed)
    y1 = (rng.random(37) < 0.4).astype(int)
    y2 = (rng.random(23) < 0.6).astype(int)
    y1[:2], y2[:2] = [0, 1], [0, 1]
    s1 = np.round(rng.normal(size=37) + 1.2 * y1, 1)
    s2 = np.round(rng.normal(size=23) + 0.4 * y2, 1)
    t = delong_test_unpaired(y1, s1, y2, s2)
    d, df, p = _naive_unpaired(y1, s1, y2, s2)
    assert t.z == pytest.approx(d, rel=1e-10)
    assert t.df == pytest.approx(df, rel=1e-10)
    assert t.p_value == pytest.approx(p, rel=1e-9)
    # small cohorts: the t reference gives a larger p than the normal one
    assert t.p_value > 2 * sps.norm.sf(abs(d))
    assert not t.paired


def _naive_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) with explicit placement values, O(k·m·n)."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    k = scores.shape[0]
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    aucs = np.zeros(k)
    for r in range(k):
        for i in range(m):
            for j in range(n):
                psi = 1.0 if pos[r, i] > neg[r, j] else (0.5 if pos[r, i] == neg[r, j] else 0.0)
                v10[r, i] += psi / n
                v01[r, j] += psi / m
        aucs[r] = v10[r].mean()
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return aucs, s10 / m + s01 / n


@st.composite
def _labelled_scores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(4, 30))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    if y.sum() < 2 or y.sum() > n - 2:
        y[:2] = 1
        y[2:4] = 0
    k = draw(st.integers(1, 3))
    # few distinct values so ties (within and between classes) are frequent
    vals = draw(st.lists(st.integers(0, 5), min_size=n * k, max_size=n * k))
    return y, np.array(vals, dtype=float).reshape(k, n) / 2.0


@settings(max_examples=60, deadline=None)
@given(_labelled_scores())
def test_fast_delong_equals_naive_with_ties(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, scores = data
    res = delong(y, scores)
    aucs, cov = _naive_delong(y, scores)
    np.testing.assert_allclose(res.aucs, aucs, atol=1e-12)
    np.testing.assert_allclose(res.covariance, cov, atol=1e-12)


def test_auc_agrees_with_sklearn_and_direction_is_fixed() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    s = rng.normal(size=80) + y * 0.8
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # no automatic direction flip: a reversed marker gives 1 - AUC, as pROC direction="<"
    assert auc(y, -s) == pytest.approx(1 - auc(y, s), abs=1e-12)


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "only positive"),
        ([0, 0], [0.1, 0.2], "only negative"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "missing or infinite"),
        ([0, 1, 1], [0.1, 0.3], "3 labels"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "0/1 labels"),
        ([], [], "empty"),
    ],
)
def test_clear_errors(y: list[float], s: list[float], match: str) -> None:
    with pytest.raises(StatsError, match=match):
        auc(y, s)


def test_bootstrap_ci_seeded_stratified_and_close_to_delong() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(60), np.zeros(90)].astype(int)
    s = rng.normal(size=150) + y
    a = auc_ci(y, s, method="bootstrap", n_bootstrap=2000, seed=42)
    b = auc_ci(y, s, method="bootstrap", n_bootstrap=2000, seed=42)
    c = auc_ci(y, s, method="bootstrap", n_bootstrap=2000, seed=43)
    assert (a.lower, a.upper) == (b.lower, b.upper)
    assert (a.lower, a.upper) != (c.lower, c.upper)
    d = auc_ci(y, s, method="delong")
    assert a.lower < a.auc < a.upper
    assert abs(a.lower - d.lower) < 0.02 and abs(a.upper - d.upper) < 0.02
    # vectorised replicates equal a plain loop with the same index draws
    reps = bootstrap_auc(y, s, n_bootstrap=5, seed=7, chunk=2)[:, 0]
    g = np.random.default_rng(7)
    pos, neg = s[y == 1], s[y == 0]
    loop = []
    for start in range(0, 5, 2):
        b_ = min(2, 5 - start)
        ip, ineg = g.integers(0, 60, size=(b_, 60)), g.integers(0, 90, size=(b_, 90))
        for r in range(b_):
            loop.append(auc(np.r_[np.ones(60), np.zeros(90)], np.r_[pos[ip[r]], neg[ineg[r]]]))
    np.testing.assert_allclose(reps, loop, atol=1e-12)


def test_unstratified_bootstrap_runs() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    s = rng.normal(size=50) + y
    ci = auc_ci(y, s, method="bootstrap", stratified=False, n_bootstrap=300, seed=1)
    assert 0 <= ci.lower < ci.auc < ci.upper <= 1


def test_holm_known_values() -> None:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_roc_curve_points_trapezoid_equals_auc(asah: pd.DataFrame) -> None:
    pts = roc_curve_points(asah.y, asah.ndka)
    assert pts.fpr.iloc[0] == 0 and pts.tpr.iloc[0] == 0
    assert pts.fpr.iloc[-1] == 1 and pts.tpr.iloc[-1] == 1
    assert np.all(np.diff(pts.fpr) >= 0) and np.all(np.diff(pts.tpr) >= 0)
    area = float(np.sum(np.diff(pts.fpr) * (pts.tpr.to_numpy()[1:] + pts.tpr.to_numpy()[:-1]) / 2))
    assert area == pytest.approx(AUC_NDKA, abs=TOL)


def test_roc_band_contains_curve(asah: pd.DataFrame) -> None:
    band = roc_ci_band(asah.y, asah.s100b, n_bootstrap=200, seed=0)
    assert np.all(band.tpr_lower <= band.tpr + 1e-12) and np.all(band.tpr <= band.tpr_upper + 1e-12)
    assert band.tpr.iloc[-1] == 1.0


# --------------------------------------------------------------------------------------------------
# Issue 18: CIs that reach metrics.json, each against a computation written here
# --------------------------------------------------------------------------------------------------

Z975 = 1.959963984540054  # Φ⁻¹(0.975), R: qnorm(0.975)
Z95 = 1.6448536269514722  # Φ⁻¹(0.95), R: qnorm(0.95)


def test_compare_models_difference_ci_equals_proc_roc_test_by_hand(asah: pd.DataFrame) -> None:
    """pROC's ``roc.test(ndka, s100b, method="delong")`` CI of the AUC difference, from pROC's own numbers.

    pROC: diff = AUC1 − AUC2, var = var1 + var2 − 2·cov, CI = diff ± qnorm((1 + level)/2)·√var. The numbers
    are pROC's (DeLong variances and covariance of its tests), not ours. A wrong normal quantile (e.g.
    qnorm(level) or a fixed 1.96 at level 0.9) fails here.
    """
    diff = AUC_NDKA - AUC_S100B
    se = np.sqrt(VAR_NDKA + VAR_S100B - 2 * COV_NDKA_S100B)
    assert diff / se == pytest.approx(Z_NDKA_S100B, abs=1e-9)  # the same numbers give pROC's Z
    for level, zq in ((0.95, Z975), (0.90, Z95)):
        table = compare_models(asah.y, {"ndka": asah.ndka, "s100b": asah.s100b}, level=level)
        row = table.iloc[0]
        assert (row.model_1, row.model_2) == ("ndka", "s100b")
        assert row.difference == pytest.approx(diff, abs=TOL)
        assert row.se == pytest.approx(se, rel=1e-8)
        assert row.ci_lower == pytest.approx(diff - zq * se, abs=TOL)
        assert row.ci_upper == pytest.approx(diff + zq * se, abs=TOL)
    # the interval pROC's numbers give, to 4 digits (a readable check of the formula above)
    row = compare_models(asah.y, {"ndka": asah.ndka, "s100b": asah.s100b}).iloc[0]
    assert (round(row.ci_lower, 4), round(row.ci_upper, 4)) == (-0.2877, 0.0489)


def test_auc_ci_delong_quantile_at_two_levels(asah: pd.DataFrame) -> None:
    """AUC ± qnorm((1 + level)/2)·√var with pROC's variance, at 0.95 (pROC's CI) and 0.90."""
    for level, zq in ((0.95, Z975), (0.90, Z95)):
        ci = auc_ci(asah.y, asah.ndka, method="delong", level=level)
        assert ci.lower == pytest.approx(AUC_NDKA - zq * np.sqrt(VAR_NDKA), abs=TOL)
        assert ci.upper == pytest.approx(AUC_NDKA + zq * np.sqrt(VAR_NDKA), abs=TOL)
        assert ci.level == level


def _type7_quantile(values: np.ndarray, p: float) -> float:
    """R's default quantile (type 7), written out: linear interpolation between order statistics."""
    v = np.sort(values)
    h = (v.size - 1) * p
    lo = int(np.floor(h))
    hi = min(lo + 1, v.size - 1)
    return float(v[lo] + (h - lo) * (v[hi] - v[lo]))


def test_auc_ci_bootstrap_is_the_percentile_interval_of_its_replicates(asah: pd.DataFrame) -> None:
    """The bootstrap CI is the (α/2, 1 − α/2) type-7 percentile of the same replicates (pROC ci.auc boot)."""
    for level in (0.95, 0.8):
        ci = auc_ci(asah.y, asah.s100b, method="bootstrap", level=level, n_bootstrap=500, seed=11)
        reps = bootstrap_auc(asah.y, asah.s100b, n_bootstrap=500, seed=11)[:, 0]
        alpha = 1 - level
        assert ci.lower == pytest.approx(_type7_quantile(reps, alpha / 2), abs=1e-12)
        assert ci.upper == pytest.approx(_type7_quantile(reps, 1 - alpha / 2), abs=1e-12)
        assert ci.se == pytest.approx(np.std(reps, ddof=1), rel=1e-12)


def _naive_sensitivity_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr_grid: np.ndarray) -> np.ndarray:
    """Highest sensitivity over all cut-offs (score ≥ t) whose false-positive rate is ≤ f, by brute force."""
    cuts = np.r_[np.inf, np.unique(np.r_[pos, neg])]
    tpr = (pos[None, :] >= cuts[:, None]).mean(axis=1)
    fpr = (neg[None, :] >= cuts[:, None]).mean(axis=1)
    return np.array([tpr[fpr <= f + 1e-12].max() for f in fpr_grid])


def test_roc_ci_band_is_the_percentile_band_of_the_same_replicates(asah: pd.DataFrame) -> None:
    """Pointwise percentile band, recomputed here on the same stratified bootstrap replicates.

    Relation to pROC's ``ci.se(roc, specificities = 1 − fpr, boot.stratified = TRUE)``: the same procedure
    (cases and controls resampled separately; per replicate the sensitivity at each fixed specificity; the
    CI is the (α/2, 1 − α/2) quantile, type 7, of the replicates). Two differences: the random streams
    differ, so the numbers agree in distribution only, and here the sensitivity at a false-positive rate
    between two vertices of the empirical curve is the highest one reachable (step curve, no
    interpolation). A min/max band (or any other statistic than the percentile) fails here.
    """
    grid = np.linspace(0, 1, 21)
    n_boot, seed, level = 200, 5, 0.9
    band = roc_ci_band(asah.y, asah.s100b, fpr_grid=grid, level=level, n_bootstrap=n_boot, seed=seed)
    y = asah.y.to_numpy()
    s = asah.s100b.to_numpy(float)
    pos, neg = s[y == 1], s[y == 0]
    rng = np.random.default_rng(seed)  # the documented draw order: positives, then negatives, per replicate
    reps = np.empty((n_boot, grid.size))
    for b in range(n_boot):
        ps = pos[rng.integers(0, pos.size, pos.size)]
        ns = neg[rng.integers(0, neg.size, neg.size)]
        reps[b] = _naive_sensitivity_at_fpr(ps, ns, grid)
    lower = [_type7_quantile(reps[:, j], (1 - level) / 2) for j in range(grid.size)]
    upper = [_type7_quantile(reps[:, j], (1 + level) / 2) for j in range(grid.size)]
    np.testing.assert_allclose(band.fpr, grid)
    np.testing.assert_allclose(band.tpr, _naive_sensitivity_at_fpr(pos, neg, grid), atol=1e-12)
    np.testing.assert_allclose(band.tpr_lower, lower, atol=1e-12)
    np.testing.assert_allclose(band.tpr_upper, upper, atol=1e-12)
    # the band is not the envelope of the replicates
    inner = (grid > 0.05) & (grid < 0.95)
    assert np.any(band.tpr_lower.to_numpy()[inner] > reps.min(axis=0)[inner])
