"""Decision curves against R dcurves (tests/data/dca) and the Python dcurves package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rccgrade.errors import StatsError
from rccgrade.stats import decision_curve, default_thresholds, net_benefit

COLS = ["n", "pos_rate", "test_pos_rate", "tp_rate", "fp_rate", "harm", "net_benefit", "net_intervention_avoided"]


@pytest.fixture(scope="module")
def case1(reference_file: Callable[..., Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(reference_file("dca", "df_binary.csv")), pd.read_csv(
        reference_file("dca", "r_case1_results.csv")
    )


def test_net_benefit_matches_r_dcurves_every_threshold(case1: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    data, ref = case1
    thresholds = ref.loc[ref.variable == "all", "threshold"].to_numpy()
    assert thresholds.size == 100 and thresholds[0] == 0
    ours = decision_curve(data.cancer.astype(int), {"famhistory": data.famhistory}, thresholds)
    assert list(ours.columns) == list(ref.columns)
    for var in ("famhistory", "all", "none"):
        a = ours[ours.variable == var].reset_index(drop=True)
        b = ref[ref.variable == var].reset_index(drop=True)
        assert len(a) == len(b) == 100
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_allclose(a.threshold, b.threshold, atol=1e-12)
        for col in COLS:
            # -inf (threshold 0) and NaN (treat all at 0) must agree too
            np.testing.assert_allclose(
                a[col].astype(float), b[col].astype(float), atol=1e-6, rtol=0, err_msg=f"{var} {col}"
            )


def test_net_benefit_function(case1: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    data, ref = case1
    r = ref[ref.variable == "famhistory"]
    nb = net_benefit(data.cancer.astype(int), data.famhistory, r.threshold.to_numpy())
    np.testing.assert_allclose(nb, r.net_benefit, atol=1e-6, rtol=0)


def test_agrees_with_python_dcurves_on_continuous_risk(case1: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    import dcurves  # a declared dependency: missing is a failure, not a skip

    data, _ = case1
    t = default_thresholds(0.01, 0.99, 0.01)
    ref = dcurves.dca(
        data=data.assign(cancer=data.cancer.astype(int)),
        outcome="cancer",
        modelnames=["cancerpredmarker"],
        thresholds=t,
    )
    ours = decision_curve(data.cancer.astype(int), {"cancerpredmarker": data.cancerpredmarker}, t)
    for var in ("cancerpredmarker", "all", "none"):
        a = ours[ours.variable == var].reset_index(drop=True)
        b = ref[ref.model == var].reset_index(drop=True)
        for col in ("test_pos_rate", "tp_rate", "fp_rate", "net_benefit", "net_intervention_avoided"):
            np.testing.assert_allclose(a[col].astype(float), b[col].astype(float), atol=1e-9, err_msg=f"{var} {col}")


def test_naive_net_benefit_loop() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200), 2)
    t = default_thresholds()
    nb = net_benefit(y, p, t)
    for k, th in enumerate(t):
        eff = th if th > 0 else 1e-9
        tp = sum(1 for yi, pi in zip(y, p, strict=True) if pi >= eff and yi == 1) / 200
        fp = sum(1 for yi, pi in zip(y, p, strict=True) if pi >= eff and yi == 0) / 200
        assert nb[k] == pytest.approx(tp - fp * th / (1 - th), abs=1e-12)


def test_default_thresholds_and_errors() -> None:
    t = default_thresholds()
    assert t.size == 100 and t[0] == 0.0 and t[-1] == 0.99 and t[37] == 0.37
    with pytest.raises(StatsError, match=r"\[0, 1\)"):
        net_benefit([0, 1], [0.2, 0.4], [0.5, 1.0])
    with pytest.raises(StatsError, match="reserved"):
        decision_curve([0, 1], {"all": [0.2, 0.4]})
    with pytest.raises(StatsError, match="probabilities"):
        decision_curve([0, 1], {"m": [0.2, 1.4]})
