"""Contract of stats.calibration beyond the reference comparisons (kills ``make mutation`` survivors).

Non-convergence (NaN fields, ``converged`` False, a logged warning), each exit of the Newton–Raphson
solver, single-class inputs where they are allowed, defaults, bin and group edge cases, the LOWESS
special cases (ties at the evaluation point, a degenerate neighbourhood, small ``frac``) against a naive
loop written here, and the exact error messages.
"""

from __future__ import annotations

import logging
import math
import re
import warnings

import numpy as np
import pytest
from scipy.special import expit

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
from rccgrade.stats.calibration import _newton_logistic

SEPARATED_Y = np.array([0, 0, 0, 1, 1, 1])
SEPARATED_P = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
LOG = "rccgrade.stats.calibration"


def _raises(exact: str):  # type: ignore[no-untyped-def]
    return pytest.raises(StatsError, match="^" + re.escape(exact))


def _all_nan(fit) -> bool:  # type: ignore[no-untyped-def]
    return all(isinstance(v, float) and math.isnan(v) for v in (fit.estimate, fit.se, fit.ci_lower, fit.ci_upper))


def test_non_convergence_is_nan_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG):
        slope = calibration_slope(SEPARATED_Y, SEPARATED_P)
    assert _all_nan(slope) and slope.converged is False
    assert caplog.messages == ["calibration slope: Newton–Raphson did not converge (separation?); reporting NaN"]
    caplog.clear()
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    p = np.array([0.2, 0.7, 0.4, 0.6, 0.9, 0.65, 0.5, 0.45])
    with caplog.at_level(logging.WARNING, logger=LOG):
        ok_slope, ok_intercept = calibration_slope(y, p), calibration_intercept(y, p)
    assert caplog.messages == [] and ok_slope.converged is True and ok_intercept.converged is True


def test_newton_exits() -> None:
    """Each non-converged exit returns a (p, p) NaN covariance and ok = False."""
    X = np.column_stack([np.ones(6), np.log(SEPARATED_P / (1 - SEPARATED_P))])
    for kwargs in ({"max_iter": 1}, {}):  # iteration limit; singular Hessian under separation
        beta, cov, ok = _newton_logistic(X, SEPARATED_Y.astype(float), np.zeros(6), **kwargs)
        assert ok is False and cov.shape == (2, 2) and np.isnan(cov).all()
    # a first step beyond 1e6: a predictor of scale 1e-9
    tiny = np.array([[1e-9], [2e-9], [-1e-9], [-2e-9]])
    beta, cov, ok = _newton_logistic(tiny, np.array([1.0, 1.0, 0.0, 0.0]), np.zeros(4))
    assert ok is False and cov.shape == (1, 1) and np.isnan(cov).all() and np.abs(beta).max() > 1e6
    # converged: the covariance is the inverse Hessian at the estimate
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0.0])
    x = np.array([-1.0, 0.5, -0.2, 1.0, 0.1, 0.3, -0.4, -0.9])
    Xc = np.column_stack([np.ones(8), x])
    beta, cov, ok = _newton_logistic(Xc, y, np.zeros(8))
    mu = expit(Xc @ beta)
    assert ok is True
    np.testing.assert_allclose(cov, np.linalg.inv((Xc * (mu * (1 - mu))[:, None]).T @ Xc), rtol=1e-10)


def test_probabilities_of_exactly_0_and_1_are_clipped_not_infinite() -> None:
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    p = np.array([0.0, 0.7, 0.4, 1.0, 0.9, 0.65, 0.5, 0.45])
    for fit in (calibration_intercept(y, p), calibration_slope(y, p)):
        assert fit.converged and np.isfinite([fit.estimate, fit.se, fit.ci_lower, fit.ci_upper]).all()


def test_single_class_outcomes() -> None:
    """Brier score and curves accept one outcome class (a subgroup); logistic recalibration needs both."""
    y, p = np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])
    assert brier_score(y, p) == pytest.approx(np.mean((1 - p) ** 2))
    assert calibration_curve(y, p, n_bins=1).observed.tolist() == [1.0]
    assert smoothed_calibration(y, p, n_points=3).observed.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(StatsError):
        calibration_intercept(y, p)
    with pytest.raises(StatsError, match=r"(?<!X)predicted probability(?!X)"):
        brier_score(np.array([0, 1]), np.array([0.5, 1.5]))


def test_calibration_curve_defaults_columns_and_level() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    curve = calibration_curve(y, p)
    assert list(curve.columns) == [
        "bin", "n", "p_min", "p_max", "mean_predicted", "observed", "n_positive", "ci_lower", "ci_upper",
    ]  # fmt: skip
    assert curve.bin.tolist() == list(range(10)) and curve.index.tolist() == list(range(10))
    narrow = calibration_curve(y, p, level=0.5)
    assert (narrow.ci_upper - narrow.ci_lower < curve.ci_upper - curve.ci_lower).all()
    assert len(calibration_curve(y, p, n_bins=1)) == 1
    with _raises("the number of bins must be at least 1; got 0"):
        calibration_curve(y, p, n_bins=0)
    with _raises("unknown binning strategy 'kmeans'; use 'quantile' or 'uniform'"):
        calibration_curve(y, p, strategy="kmeans")  # type: ignore[arg-type]


def _naive_lowess(x: np.ndarray, y: np.ndarray, xv: np.ndarray, frac: float) -> np.ndarray:
    """Cleveland's local linear fit with tricube weights, written out point by point."""
    n = len(x)
    k = min(max(int(frac * n + 1e-10), 2), n)
    out = []
    for x0 in xv:
        d = np.abs(x - x0)
        h = np.sort(d)[k - 1]
        if h == 0:
            out.append(y[d == 0].mean())
            continue
        w = np.array([(1 - min(di / h, 1.0) ** 3) ** 3 for di in d])
        xm, ym = np.average(x, weights=w), np.average(y, weights=w)
        sxx = np.sum(w * (x - xm) ** 2)
        if sxx <= 1e-12 * max(1.0, h**2) * w.sum():
            out.append(ym)
        else:
            out.append(ym + np.sum(w * (x - xm) * (y - ym)) / sxx * (x0 - xm))
    return np.array(out)


def test_lowess_special_cases_against_a_naive_loop() -> None:
    rng = np.random.default_rng(1)
    x = rng.random(30)
    y = rng.random(30)
    grid = np.linspace(0, 1, 17)
    for frac in (0.05, 0.2, 0.5, 1.0):  # 0.05·30 → k = 2 (the minimum)
        np.testing.assert_allclose(lowess(x, y, grid, frac=frac), _naive_lowess(x, y, grid, frac), atol=1e-12)
    # ties: 6 observations at 0.5, k = 4 → h = 0 there, the fit is their mean (and the loop continues)
    xt = np.r_[np.full(6, 0.5), np.linspace(0, 1, 6)]
    yt = np.r_[[1.0, 0.0, 1.0, 1.0, 0.0, 1.0], np.linspace(0, 1, 6)]
    got = lowess(xt, yt, [0.5, 0.1, 0.9], frac=1 / 3)
    np.testing.assert_allclose(got, _naive_lowess(xt, yt, np.array([0.5, 0.1, 0.9]), 1 / 3), atol=1e-12)
    assert got[0] == pytest.approx(4 / 6)
    # degenerate neighbourhood: every observation with weight sits at x = 1 → the weighted mean of y
    xd, yd = np.array([1.0, 1.0, 1.0, 1.0, 3.0]), np.array([0.0, 1.0, 1.0, 0.0, 5.0])
    assert lowess(xd, yd, [1.2], frac=1.0)[0] == pytest.approx(0.5)
    with _raises("lowess frac must be in (0, 1]; got 0.0"):
        lowess(x, y, grid, frac=0.0)
    with _raises("lowess frac must be in (0, 1]; got 1.5"):
        lowess(x, y, grid, frac=1.5)


def test_smoothed_calibration_defaults_clip_and_frac() -> None:
    p = np.linspace(0.05, 0.95, 40)
    y = (p > 0.5).astype(int)
    curve = smoothed_calibration(y, p)
    assert list(curve.columns) == ["predicted", "observed"] and len(curve) == 100
    raw = lowess(p, y, curve.predicted.to_numpy(), frac=2 / 3)
    assert raw.max() > 1 and raw.min() < 0  # the local lines overshoot at both ends ...
    np.testing.assert_allclose(curve.observed, np.clip(raw, 0, 1))  # ... and the curve is clipped
    small = smoothed_calibration(y, p, n_points=5, frac=0.3)
    np.testing.assert_allclose(small.observed, np.clip(lowess(p, y, small.predicted.to_numpy(), frac=0.3), 0, 1))


def test_hosmer_lemeshow_zero_expected_groups_and_dof() -> None:
    p = np.r_[np.zeros(10), np.linspace(0.2, 0.8, 20), np.ones(10)]
    y = np.r_[np.zeros(10), (np.arange(20) % 2), np.ones(10)].astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 and x/0 are handled, not warned about
        res = hosmer_lemeshow(y, p, n_groups=4)
    assert list(res.table.columns) == ["n", "observed_1", "expected_1", "observed_0", "expected_0"]
    o1, e1 = res.table.observed_1.to_numpy(float), res.table.expected_1.to_numpy(float)
    o0, e0 = res.table.observed_0.to_numpy(float), res.table.expected_0.to_numpy(float)
    terms = [(o - e) ** 2 / e for o, e in zip(np.r_[o1, o0], np.r_[e1, e0], strict=True) if e > 0]
    assert (e1 == 0).any() and (e0 == 0).any()  # a group with nothing expected in each column ...
    assert res.statistic == pytest.approx(sum(terms))  # ... and nothing observed: it adds 0
    y_bad = y.copy()
    y_bad[0] = 1  # one event where none was expected (p = 0): infinite lack of fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hosmer_lemeshow(y_bad, p, n_groups=4).statistic == np.inf
    three = hosmer_lemeshow(y, p, n_groups=3)
    assert (three.n_groups, three.df) == (3, 1)
    assert hosmer_lemeshow(y, p, n_groups=2, cohort="validation").df == 2
    with _raises(
        "only 2 distinct risk group(s) could be formed (many tied predictions); Hosmer–Lemeshow needs "
        "more distinct predicted probabilities"
    ):
        hosmer_lemeshow(y, p, n_groups=2)
    rng = np.random.default_rng(5)
    pr = rng.random(100)
    assert hosmer_lemeshow((rng.random(100) < pr).astype(int), pr).n_groups == 10
