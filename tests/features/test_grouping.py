"""Near-duplicate grouping against a naive complete/average-linkage agglomeration written here."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from rccgrade.errors import ConfigError
from rccgrade.features.grouping import CorrelationGrouper


def _naive_groups(X: np.ndarray, threshold: float, linkage: str, spearman: bool) -> list[frozenset[int]]:
    """Agglomerate the two closest clusters while their linkage |r| is ≥ threshold (loops, scipy per pair)."""
    p = X.shape[1]
    r = np.ones((p, p))
    for i, j in itertools.combinations(range(p), 2):
        fn = stats.spearmanr if spearman else stats.pearsonr
        r[i, j] = r[j, i] = abs(fn(X[:, i], X[:, j])[0])
    clusters = [{j} for j in range(p)]
    while True:
        best, pair = None, None
        for a, b in itertools.combinations(range(len(clusters)), 2):
            sims = [r[i, j] for i in clusters[a] for j in clusters[b]]
            sim = min(sims) if linkage == "complete" else float(np.mean(sims))
            if sim >= threshold - 1e-12 and (best is None or sim > best):
                best, pair = sim, (a, b)
        if pair is None:
            return [frozenset(c) for c in clusters]
        a, b = pair
        clusters[a] |= clusters[b]
        del clusters[b]


def _table(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 80
    base = rng.normal(size=(n, 4))
    cols = []
    for k in range(4):  # 4 phenomena with 1–4 noisy copies each (monotone transforms too)
        for c in range(k + 1):
            noise = rng.normal(scale=0.05 + 0.15 * c, size=n)
            cols.append(np.exp(base[:, k] + noise) if c == 1 else base[:, k] + noise)
    chain = rng.normal(size=n)  # a chain a–b–c: |r(a,c)| < |r(a,b)|, |r(b,c)|, so the linkages disagree
    cols += [chain, chain + rng.normal(scale=0.3, size=n), chain + rng.normal(scale=0.3, size=n) * 2.0]
    cols[-1] = cols[-2] + rng.normal(scale=0.3, size=n)
    cols += [rng.normal(size=n) for _ in range(4)]
    X = np.column_stack(cols)
    y = (base[:, 0] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return pd.DataFrame(X, columns=[f"rad:arterial:f{j:02d}" for j in range(X.shape[1])]), y


@pytest.mark.parametrize("linkage", ["complete", "average"])
@pytest.mark.parametrize("method", ["spearman", "pearson"])
@pytest.mark.parametrize("threshold", [0.8, 0.95])
def test_groups_match_naive_agglomeration(linkage: str, method: str, threshold: float) -> None:
    X, y = _table(0)
    g = CorrelationGrouper(threshold=threshold, method=method, linkage=linkage).fit(X, y)
    got = {frozenset(int(X.columns.get_loc(m)) for m in members) for members in g.groups_.values()}
    want = set(_naive_groups(X.to_numpy(), threshold, linkage, method == "spearman"))
    assert got == want
    assert any(len(s) > 1 for s in want)  # the table does hold near-duplicates


def test_complete_and_average_linkage_differ_on_a_chain() -> None:
    X, y = _table(0)
    arr = X.to_numpy()
    want = {lk: set(_naive_groups(arr, 0.9, lk, True)) for lk in ("complete", "average")}
    assert want["complete"] != want["average"]
    for lk in ("complete", "average"):
        g = CorrelationGrouper(threshold=0.9, linkage=lk).fit(X, y)  # type: ignore[arg-type]
        assert {frozenset(int(X.columns.get_loc(m)) for m in v) for v in g.groups_.values()} == want[lk]


def test_representative_is_most_relevant_on_training_rows_or_medoid() -> None:
    X, y = _table(1)
    g = CorrelationGrouper(threshold=0.8).fit(X, y)
    for rep, members in g.groups_.items():
        auc = {m: abs(roc_auc_score(y, X[m]) - 0.5) for m in members}
        assert auc[rep] == pytest.approx(max(auc.values()))
        assert members[0] == rep
    assert sorted(g.get_feature_names_out()) == sorted(g.groups_)
    assert sum(g.group_sizes().values()) == X.shape[1]  # every feature accounted for
    med = CorrelationGrouper(threshold=0.8, representative="medoid").fit(X, y)
    rho = np.abs(stats.spearmanr(X.to_numpy()).statistic)
    for rep, members in med.groups_.items():
        idx = [X.columns.get_loc(m) for m in members]
        mean_r = {m: (rho[X.columns.get_loc(m), idx].sum() - 1) / max(len(idx) - 1, 1) for m in members}
        assert mean_r[rep] == pytest.approx(max(mean_r.values()))


def test_fit_uses_only_the_rows_it_is_given() -> None:
    X, y = _table(2)
    g = CorrelationGrouper(threshold=0.8).fit(X.iloc[:40], y[:40])
    h = CorrelationGrouper(threshold=0.8).fit(X, y)
    g2 = CorrelationGrouper(threshold=0.8).fit(X.iloc[:40], y[:40])
    assert g.groups_ == g2.groups_  # deterministic
    assert g.transform(X).shape[0] == X.shape[0]
    assert not np.array_equal(g.relevance_, h.relevance_)


def test_bad_settings_are_refused() -> None:
    X, y = _table(3)
    with pytest.raises(ConfigError):
        CorrelationGrouper(linkage="single").fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CorrelationGrouper(representative="first").fit(X, y)  # type: ignore[arg-type]
