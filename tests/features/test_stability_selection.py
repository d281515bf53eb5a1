"""Stability selection: recovery of informative features, error control, determinism, subsampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import l1_min_c

from rccgrade.errors import ConfigError
from rccgrade.features.stability_selection import StabilitySelector, complementary_halves, error_bound


def _table(seed: int, n: int = 300, p_noise: int = 2000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5 + p_noise))
    logit = X[:, :5] @ np.array([1.5, -1.5, 1.25, -1.25, 1.25])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    perm = rng.permutation(X.shape[1])  # informative features anywhere, not first
    cols = [f"rad:arterial:f{j:04d}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X[:, perm], columns=cols)
    informative = sorted(cols[int(np.flatnonzero(perm == k)[0])] for k in range(5))
    return frame, y, informative  # type: ignore[return-value]


@pytest.fixture(scope="module")
def big() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    return _table(0)


@pytest.fixture(scope="module")
def fitted(big: tuple[pd.DataFrame, np.ndarray, list[str]]) -> StabilitySelector:
    X, y, _ = big
    return StabilitySelector(n_subsamples=40, n_cs=15, random_state=3).fit(X, y)


def test_recovers_the_five_informative_among_2000_noise(fitted: StabilitySelector, big: tuple) -> None:
    _, _, informative = big
    assert sorted(fitted.get_feature_names_out()) == informative
    assert fitted.error_bound_ <= 1.0 + 1e-9  # the configured E[V] bound holds for the path kept


def test_error_bound_and_path_truncation(fitted: StabilitySelector, big: tuple) -> None:
    X, _, _ = big
    p = X.shape[1]
    assert fitted.error_bound_ == pytest.approx(fitted.q_**2 / ((2 * 0.75 - 1) * p))
    assert fitted.q_ <= np.sqrt(1.0 * p * 0.5) + 1e-9
    # frequencies are the max over the kept path of the per-C frequencies
    np.testing.assert_allclose(fitted.frequencies_, fitted.path_frequencies_.max(axis=0))
    assert error_bound(10.0, 100, 0.75) == pytest.approx(2.0)
    with pytest.raises(ConfigError):
        error_bound(1.0, 10, 0.5)


def test_frequencies_match_naive_loop_over_halves() -> None:
    """Naive re-implementation: one LogisticRegression per (half, C), frequencies = max over C of the mean."""
    X, y, _ = _table(1, n=120, p_noise=40)
    sel = StabilitySelector(n_subsamples=10, max_false_positives=None, n_cs=5, random_state=7).fit(X, y)
    arr = X.to_numpy()
    z = (arr - arr.mean(0)) / arr.std(0)
    c0 = l1_min_c(z, y, loss="log")
    Cs = c0 * np.logspace(0, np.log10(30.0), 5)
    halves = complementary_halves(y, 5, 7)
    counts = np.zeros((5, arr.shape[1]))
    for h in halves:
        for i, C in enumerate(Cs):
            m = LogisticRegression(C=C, l1_ratio=1.0, solver="liblinear", class_weight="balanced", max_iter=2000)
            counts[i] += m.fit(z[h], y[h]).coef_.ravel() != 0
    np.testing.assert_allclose(sel.path_frequencies_, counts / len(halves))
    np.testing.assert_allclose(sel.frequencies_, (counts / len(halves)).max(axis=0))


def test_complementary_halves_are_disjoint_stratified_halves() -> None:
    y = np.r_[np.zeros(31, int), np.ones(17, int)]
    halves = complementary_halves(y, 4, 0)
    assert len(halves) == 8
    for a, b in zip(halves[::2], halves[1::2], strict=True):
        assert not set(a) & set(b)
        assert np.bincount(y[a]).tolist() == [15, 8] == np.bincount(y[b]).tolist()
    assert not all(np.array_equal(halves[0], h) for h in halves[2::2])  # different pairs differ


def test_deterministic_and_independent_of_n_jobs() -> None:
    X, y, _ = _table(2, n=100, p_noise=60)
    a = StabilitySelector(n_subsamples=12, random_state=5, n_jobs=1).fit(X, y)
    b = StabilitySelector(n_subsamples=12, random_state=5, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(a.frequencies_, b.frequencies_)
    c = StabilitySelector(n_subsamples=12, random_state=6).fit(X, y)
    assert not np.array_equal(a.frequencies_, c.frequencies_)


def test_threshold_is_applied_and_min_features_keeps_chain_alive() -> None:
    X, y, _ = _table(3, n=100, p_noise=60)
    lo = StabilitySelector(n_subsamples=12, threshold=0.55, max_false_positives=None).fit(X, y)
    hi = StabilitySelector(n_subsamples=12, threshold=1.0, max_false_positives=None, min_features=0).fit(X, y)
    np.testing.assert_array_equal(lo.support_, lo.frequencies_ >= 0.55)
    np.testing.assert_array_equal(hi.support_, hi.frequencies_ >= 1.0)
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.normal(size=(80, 30)), columns=[f"x{j}" for j in range(30)])
    yy = rng.permutation(np.r_[np.zeros(40, int), np.ones(40, int)])
    one = StabilitySelector(n_subsamples=10, threshold=1.0, min_features=2).fit(noise, yy)
    assert one.support_.sum() == 2
    assert set(np.flatnonzero(one.support_)) == set(np.argsort(-one.frequencies_, kind="stable")[:2])


def test_elastic_net_path_runs_and_refuses_bad_settings() -> None:
    X, y, _ = _table(4, n=120, p_noise=30)
    enet = StabilitySelector(n_subsamples=6, l1_ratio=0.5, n_cs=5).fit(X, y)
    assert enet.support_.any()
    with pytest.raises(ConfigError):
        StabilitySelector(threshold=0.5).fit(X, y)
    with pytest.raises(ConfigError):
        StabilitySelector(l1_ratio=0.0).fit(X, y)
