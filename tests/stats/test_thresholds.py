"""Youden threshold and threshold metrics with Wilson CIs (checked against statsmodels and a brute force)."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from rccgrade.errors import StatsError
from rccgrade.stats import confusion_counts, threshold_metrics, wilson_ci, youden_threshold


@pytest.mark.parametrize(("x", "n"), [(0, 10), (3, 10), (10, 10), (17, 41), (1, 1), (55, 113)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_wilson_matches_statsmodels(x: int, n: int, level: float) -> None:
    lo, hi = wilson_ci(x, n, level)
    ref = proportion_confint(x, n, alpha=1 - level, method="wilson")
    assert float(lo) == pytest.approx(ref[0], abs=1e-12)
    assert float(hi) == pytest.approx(ref[1], abs=1e-12)


def test_wilson_zero_trials_is_nan() -> None:
    lo, hi = wilson_ci(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_youden_brute_force() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.normal(size=120) + y, 1)  # ties
    res = youden_threshold(y, s)
    best = -np.inf
    for t in np.unique(s):
        j = np.mean(s[y == 1] >= t) + np.mean(s[y == 0] < t) - 1
        best = max(best, j)
    assert res.youden_j == pytest.approx(best, abs=1e-12)
    assert np.mean(s[y == 1] >= res.threshold) == pytest.approx(res.sensitivity)
    assert np.mean(s[y == 0] < res.threshold) == pytest.approx(res.specificity)
    assert res.threshold not in set(s.tolist())  # a midpoint between training scores


def test_threshold_metrics_by_hand() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.4, 0.2, 0.7, 0.3, 0.2, 0.1, 0.1, 0.05])
    c = confusion_counts(y, s, 0.35)
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 1, 5, 1)
    m = threshold_metrics(y, s, 0.35)
    assert m.loc["accuracy", "value"] == pytest.approx(0.8)
    assert m.loc["sensitivity", "value"] == pytest.approx(0.75)
    assert m.loc["specificity", "value"] == pytest.approx(5 / 6)
    assert m.loc["ppv", "value"] == pytest.approx(0.75)
    assert m.loc["npv", "value"] == pytest.approx(5 / 6)
    assert m.loc["f1", "value"] == pytest.approx(0.75)
    ref = proportion_confint(5, 6, method="wilson")
    assert m.loc["npv", "ci_lower"] == pytest.approx(ref[0]) and m.loc["npv", "ci_upper"] == pytest.approx(ref[1])
    # nobody called positive: PPV undefined, not a fake number
    m2 = threshold_metrics(y, s, 2.0)
    assert np.isnan(m2.loc["ppv", "value"]) and m2.loc["specificity", "value"] == 1.0


def test_errors() -> None:
    with pytest.raises(StatsError, match="only negative"):
        youden_threshold([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(StatsError, match="identical"):
        youden_threshold([0, 1, 1], [0.2, 0.2, 0.2])
