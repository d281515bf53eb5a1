"""Calibration: intercept/slope against statsmodels GLM, LOWESS against statsmodels, Hosmer–Lemeshow against a
naive loop implementation written here, binned curve and Brier score by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.nonparametric.smoothers_lowess import lowess as sm_lowess

from rccgrade.errors import StatsError
from rccgrade.stats import (
    brier_score,
    calibration_curve,
    calibration_intercept,
    calibration_slope,
    hosmer_lemeshow,
    lowess,
    smoothed_calibration,
)


def _data(n: int = 300, seed: int = 0, shrink: float = 0.6, shift: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lp = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(shift + shrink * lp)))).astype(int)
    return y, 1 / (1 + np.exp(-lp))


def test_intercept_and_slope_match_statsmodels_glm() -> None:
    y, p = _data()
    logit = np.log(p / (1 - p))
    fam = sm.families.Binomial()
    ref_slope = sm.GLM(y, sm.add_constant(logit), family=fam).fit()
    ref_int = sm.GLM(y, np.ones((y.size, 1)), family=fam, offset=logit).fit()
    sl = calibration_slope(y, p)
    it = calibration_intercept(y, p)
    assert sl.estimate == pytest.approx(ref_slope.params[1], abs=1e-8)
    assert sl.se == pytest.approx(ref_slope.bse[1], rel=1e-6)
    lo, hi = ref_slope.conf_int()[1]
    assert (sl.ci_lower, sl.ci_upper) == pytest.approx((lo, hi), abs=1e-6)
    assert it.estimate == pytest.approx(ref_int.params[0], abs=1e-8)
    assert it.se == pytest.approx(ref_int.bse[0], rel=1e-6)
    assert sl.converged and it.converged
    # a perfectly calibrated generator gives slope ~1 / intercept ~0 on a large sample
    yb, pb = _data(20000, seed=1, shrink=1.0, shift=0.0)
    assert calibration_slope(yb, pb).estimate == pytest.approx(1.0, abs=0.06)
    assert calibration_intercept(yb, pb).estimate == pytest.approx(0.0, abs=0.06)


def test_separation_gives_nan_not_a_number() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    res = calibration_slope(y, p)
    assert not res.converged and np.isnan(res.estimate)


def test_brier_by_hand() -> None:
    assert brier_score([1, 0, 1], [0.8, 0.3, 0.4]) == pytest.approx((0.04 + 0.09 + 0.36) / 3)


def test_lowess_matches_statsmodels() -> None:
    rng = np.random.default_rng(4)
    x = np.sort(rng.random(150))
    y = (rng.random(150) < x).astype(float)
    grid = np.linspace(x.min(), x.max(), 40)
    ref = sm_lowess(y, x, frac=2 / 3, it=0, delta=0.0, xvals=grid)
    np.testing.assert_allclose(lowess(x, y, grid, frac=2 / 3), ref, atol=1e-8)
    ref_at_x = sm_lowess(y, x, frac=0.3, it=0, delta=0.0, return_sorted=False)
    np.testing.assert_allclose(lowess(x, y, x, frac=0.3), ref_at_x, atol=1e-8)
    sm_curve = smoothed_calibration(y.astype(int), x, n_points=25)
    assert sm_curve.shape == (25, 2) and sm_curve.observed.between(0, 1).all()


def _naive_hl(y: np.ndarray, p: np.ndarray, g: int) -> tuple[float, int]:
    """ResourceSelection::hoslem.test, step by step: R type-7 quantile breaks, cut(include.lowest=TRUE)."""
    probs = np.arange(g + 1) / g
    srt = np.sort(p)
    n = len(p)
    breaks = []
    for q in probs:  # R quantile type 7
        h = (n - 1) * q
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        breaks.append(srt[lo] + (h - lo) * (srt[hi] - srt[lo]))
    breaks = sorted(set(breaks))
    stat = 0.0
    groups = 0
    for k in range(len(breaks) - 1):
        a, b = breaks[k], breaks[k + 1]
        members = [i for i in range(n) if (a < p[i] <= b) or (k == 0 and p[i] == a)]
        if not members:
            continue
        groups += 1
        o1 = sum(y[i] for i in members)
        e1 = sum(p[i] for i in members)
        o0 = len(members) - o1
        e0 = len(members) - e1
        stat += (o1 - e1) ** 2 / e1 + (o0 - e0) ** 2 / e0
    return stat, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_hosmer_lemeshow_matches_naive(seed: int, ties: bool) -> None:
    y, p = _data(237, seed=seed)
    if ties:
        p = np.clip(np.round(p, 1), 0.05, 0.95)
    stat, groups = _naive_hl(y, p, 10)
    dev = hosmer_lemeshow(y, p, 10, cohort="development")
    val = hosmer_lemeshow(y, p, 10, cohort="validation")
    assert dev.statistic == pytest.approx(stat, rel=1e-10)
    assert dev.n_groups == groups
    assert dev.df == groups - 2 and val.df == groups
    assert dev.p_value == pytest.approx(sps.chi2.sf(stat, groups - 2), rel=1e-10)
    assert val.p_value == pytest.approx(sps.chi2.sf(stat, groups), rel=1e-10)
    assert dev.table.n.sum() == y.size


def test_hosmer_lemeshow_errors() -> None:
    with pytest.raises(StatsError, match="distinct risk group"):
        hosmer_lemeshow([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    with pytest.raises(StatsError, match="cohort kind"):
        hosmer_lemeshow(*_data(50), cohort="test")  # type: ignore[arg-type]


def test_calibration_curve_quantile_bins() -> None:
    y, p = _data(200, seed=3)
    cc = calibration_curve(y, p, n_bins=5)
    assert len(cc) == 5 and cc.n.tolist() == [40] * 5
    q = pd.qcut(p, 5, labels=False)
    ref = pd.DataFrame({"q": q, "y": y, "p": p}).groupby("q").mean()
    np.testing.assert_allclose(cc.observed, ref.y)
    np.testing.assert_allclose(cc.mean_predicted, ref.p)
    assert (cc.ci_lower <= cc.observed).all() and (cc.observed <= cc.ci_upper).all()
    uni = calibration_curve(y, p, n_bins=4, strategy="uniform")
    counts = np.bincount(np.minimum((p * 4).astype(int), 3), minlength=4)  # no p lies exactly on an edge
    assert uni.n.tolist() == counts[counts > 0].tolist()


def test_probability_checks() -> None:
    with pytest.raises(StatsError, match=r"probabilities in \[0, 1\]"):
        brier_score([0, 1], [0.2, 1.2])
