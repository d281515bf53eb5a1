"""Contract of stats.dca beyond the R comparison (kills ``make mutation`` survivors).

Harms (per model and for Treat All) lower the net benefit by exactly the harm, ``nper`` scales
interventions avoided, single-class outcomes are accepted, a threshold of 0 raises no floating-point
warning, and threshold ranges and messages are checked exactly.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from rccgrade.errors import StatsError
from rccgrade.stats import decision_curve, default_thresholds, net_benefit

Y = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
P = np.array([0.8, 0.3, 0.6, 0.55, 0.2, 0.45, 0.1, 0.9, 0.35, 0.05])
T = np.array([0.0, 0.1, 0.3, 0.5])


def _raises(exact: str):  # type: ignore[no-untyped-def]
    return pytest.raises(StatsError, match="^" + re.escape(exact))


def _naive_nb(y: np.ndarray, p: np.ndarray, t: float) -> float:
    called = p >= max(t, 1e-9)
    return (np.sum(called & (y == 1)) - t / (1 - t) * np.sum(called & (y == 0))) / y.size


def test_harm_is_subtracted_for_models_and_treat_all() -> None:
    base = decision_curve(Y, {"m": P}, T)
    harmed = decision_curve(Y, {"m": P}, T, harm={"m": 0.05, "all": 0.02})
    for var, h in (("m", 0.05), ("all", 0.02), ("none", 0.0)):
        a = base[base.variable == var].net_benefit.to_numpy()
        b = harmed[harmed.variable == var].net_benefit.to_numpy()
        np.testing.assert_allclose(a - b, h, atol=1e-12, err_msg=var)
        assert (harmed[harmed.variable == var].harm == h).all()
    np.testing.assert_allclose(base[base.variable == "m"].net_benefit, [_naive_nb(Y, P, t) for t in T], atol=1e-12)
    np.testing.assert_allclose(net_benefit(Y, P, T, harm=0.05), [_naive_nb(Y, P, t) - 0.05 for t in T], atol=1e-12)
    prev = Y.mean()
    treat_all = base[base.variable == "all"]
    np.testing.assert_allclose(treat_all.tp_rate, prev)
    np.testing.assert_allclose(treat_all.fp_rate, 1 - prev)
    assert base.index.equals(pd.RangeIndex(len(base)))
    assert all(base[c].dtype == np.float64 for c in ("test_pos_rate", "tp_rate", "fp_rate", "net_benefit"))


def test_interventions_avoided_scale_and_no_warnings_at_zero() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # threshold 0: x/0 and 0/0 are expected and silenced
        one = decision_curve(Y, {"m": P}, T)
        hundred = decision_curve(Y, {"m": P}, T, nper=100)
    m1 = one[(one.variable == "m") & (one.threshold > 0)]
    m100 = hundred[(hundred.variable == "m") & (hundred.threshold > 0)]
    np.testing.assert_allclose(m100.net_intervention_avoided, 100 * m1.net_intervention_avoided.to_numpy())
    nb_all = one[(one.variable == "all") & (one.threshold > 0)].net_benefit.to_numpy()
    t = m1.threshold.to_numpy()
    np.testing.assert_allclose(m1.net_intervention_avoided, (m1.net_benefit.to_numpy() - nb_all) / (t / (1 - t)))


def test_single_class_outcomes_and_named_errors() -> None:
    y0 = np.zeros(4, dtype=int)
    p0 = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(net_benefit(y0, p0, [0.25]), [-(1 / 3) * 2 / 4])
    assert len(decision_curve(y0, {"m": p0}, [0.25])) == 3
    with pytest.raises(StatsError, match=r"(?<!X)predicted probability of 'm'(?!X)"):
        decision_curve(Y, {"m": np.r_[P[:-1], 1.5]}, T)
    with pytest.raises(StatsError, match=r"(?<!X)predicted probability(?!X)"):
        net_benefit(Y, np.r_[P[:-1], 1.5], T)
    with _raises("model names ['none'] are reserved for Treat All / Treat None; rename them"):
        decision_curve(Y, {"none": P}, T)


def test_threshold_checks_and_ranges() -> None:
    np.testing.assert_allclose(net_benefit(Y, P, [0.3]), [_naive_nb(Y, P, 0.3)])  # one threshold is enough
    np.testing.assert_allclose(net_benefit(Y, P, 0.3), [_naive_nb(Y, P, 0.3)])
    with _raises("thresholds must be a non-empty 1-D sequence of probabilities"):
        net_benefit(Y, P, [])
    with _raises("thresholds must be a non-empty 1-D sequence of probabilities"):
        net_benefit(Y, P, [[0.1, 0.2]])
    np.testing.assert_array_equal(default_thresholds(0.5, 0.5, 0.1), [0.5])
    np.testing.assert_array_equal(default_thresholds(0.0, 0.9, 1 / 3), [0.0, 0.3333333333, 0.6666666667])
    for args in ((0.0, 0.5, 0.0), (0.0, 0.5, -0.1), (0.6, 0.5, 0.1)):
        with _raises(f"invalid threshold range {args[0]}–{args[1]} step {args[2]}"):
            default_thresholds(*args)
