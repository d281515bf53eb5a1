"""The nearest-score interval (models/score_interval.py) against independent references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from rccgrade.errors import ModelError
from rccgrade.models.score_interval import default_k, score_interval, wilson


@pytest.mark.parametrize(("x", "n"), [(0, 20), (3, 20), (10, 20), (20, 20), (7, 31), (1, 1)])
def test_wilson_matches_statsmodels(x: int, n: int) -> None:
    lo, hi = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert wilson(x, n) == pytest.approx((lo, hi), abs=1e-12)


def test_interval_matches_a_naive_neighbour_count() -> None:
    rng = np.random.default_rng(3)
    oof = rng.uniform(0.02, 0.98, 150)
    y = (rng.uniform(size=150) < oof).astype(int)
    new = pd.Series([0.05, 0.3, 0.5, 0.93], index=["a", "b", "c", "d"])
    got = score_interval(oof, y, new, k=25)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    for pid, p in new.items():
        order = sorted(range(150), key=lambda i: (abs(logit(oof[i]) - logit(p)), i))[:25]
        lo, hi = proportion_confint(int(y[order].sum()), 25, alpha=0.05, method="wilson")
        assert got.loc[pid, "lower"] == pytest.approx(lo, abs=1e-12)
        assert got.loc[pid, "upper"] == pytest.approx(hi, abs=1e-12)
    # low scores sit among low-grade patients, high scores among high-grade ones
    assert got.loc["a", "upper"] < got.loc["d", "lower"]


def test_default_k_and_refusals() -> None:
    assert default_k(10) == 10 and default_k(100) == 20 and default_k(400) == 40
    with pytest.raises(ModelError, match="too few"):
        score_interval([0.5] * 5, [0, 1, 0, 1, 0], pd.Series([0.5]))
    with pytest.raises(ModelError, match="do not match"):
        score_interval([0.5] * 12, [0, 1] * 5, pd.Series([0.5]))
    with pytest.raises(ModelError, match="0/1"):
        score_interval([0.5] * 12, [0, 2] * 6, pd.Series([0.5]))
    nan = score_interval(np.linspace(0.1, 0.9, 12), [0, 1] * 6, pd.Series([np.nan], index=["x"]))
    assert nan["lower"].isna().all()
