"""The corrected resampled t-test (stats/resampled.py) against scipy's one-sample t-test and a closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from rccgrade.errors import StatsError
from rccgrade.stats import corrected_resampled_ttest


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_zero_ratio_is_scipys_one_sample_t_test(alternative: str) -> None:
    """Catches a wrong variance (ddof 0), wrong degrees of freedom, or a tail mixed up."""
    scores = np.random.default_rng(3).normal(0.56, 0.08, size=15)
    got = corrected_resampled_ttest(scores, 0.0, alternative=alternative)  # type: ignore[arg-type]
    ref = ttest_1samp(scores, 0.5, alternative=alternative)
    assert got.t == pytest.approx(ref.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert (got.df, got.n_scores) == (14, 15)


def test_corrected_statistic_against_a_closed_form() -> None:
    """Three scores, k-fold ratio 1/4: t and p by hand (Student's t with 2 df has sf(t) = (1 - t/sqrt(t²+2))/2).

    Catches the correction left out, 1/J dropped, J instead of J − 1 degrees of freedom, or a two-sided p."""
    got = corrected_resampled_ttest([0.6, 0.7, 0.8], 0.25)
    se = np.sqrt((1 / 3 + 0.25) * 0.01)  # sample variance of (0.6, 0.7, 0.8) is 0.01
    t = 0.2 / se
    assert got.se == pytest.approx(se, rel=1e-12)
    assert got.t == pytest.approx(t, rel=1e-12)
    assert got.p_value == pytest.approx((1 - t / np.sqrt(t * t + 2)) / 2, rel=1e-10)
    assert got.p_value == pytest.approx(0.0601, abs=1e-4)
    assert got.mean == pytest.approx(0.7)


def test_more_overlap_means_less_evidence() -> None:
    """The correction only ever widens the standard error: p grows with the held-out/training ratio."""
    scores = [0.62, 0.71, 0.58, 0.66, 0.69, 0.6]
    ps = [corrected_resampled_ttest(scores, r).p_value for r in (0.0, 0.1, 0.25, 1.0)]
    assert ps == sorted(ps) and ps[0] < ps[-1]


def test_identical_scores_are_certain_in_their_direction() -> None:
    """Catches a variance of float round-off (≈ 1e-32, not 0) read as evidence: mean(0.1, 0.1, 0.1) is
    0.10000000000000002, which must not count as above a null of 0.1."""
    above = corrected_resampled_ttest([0.7, 0.7, 0.7], 0.25)
    assert (above.p_value, above.se, above.t) == (0.0, 0.0, float("inf"))
    assert corrected_resampled_ttest([0.4, 0.4], 0.25).p_value == 1.0
    assert corrected_resampled_ttest([0.5, 0.5], 0.25).p_value == pytest.approx(0.5)
    at_null = corrected_resampled_ttest([0.1, 0.1, 0.1], 0.25, null=0.1)
    assert (at_null.t, at_null.p_value) == (0.0, 0.5)


def test_result_records_its_settings() -> None:
    got = corrected_resampled_ttest([0.62, 0.71, 0.58], 0.2, null=0.55, alternative="two-sided")
    assert (got.test_train_ratio, got.alternative, got.n_scores, got.df) == (0.2, "two-sided", 3, 2)
    assert 0 < got.p_value <= 1


@pytest.mark.parametrize(
    ("scores", "ratio", "alternative", "message"),
    [
        ([0.7], 0.25, "greater", "2 or more scores"),
        ([[0.7, 0.6]], 0.25, "greater", "one dimension"),
        ([0.7, np.nan], 0.25, "greater", r"finite numbers; got \[nan\]"),
        ([0.7, 0.6], -0.1, "greater", "held-out over training"),
        ([0.7, 0.6], float("nan"), "greater", "held-out over training"),
        ([0.7, 0.6], 0.25, "bigger", "alternative"),
    ],
)
def test_bad_input_raises_a_clear_error(scores: list, ratio: float, alternative: str, message: str) -> None:
    with pytest.raises(StatsError, match=message):
        corrected_resampled_ttest(scores, ratio, alternative=alternative)  # type: ignore[arg-type]
