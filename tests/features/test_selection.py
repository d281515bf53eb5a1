"""Selection transformers against naive re-implementations written here (loops, scipy per column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from rccgrade.errors import ModelError
from rccgrade.features.selection import (
    ComBat,
    CorrelationFilter,
    LassoSelector,
    MRMRSelector,
    NearConstantFilter,
    PrefixPCA,
    SourceUnion,
    StabilityFilter,
    TabularPreprocessor,
    UnivariateFilter,
    combat_fit,
    univariate_auc,
)


def _frame(arr: np.ndarray, prefix: str = "rad:arterial:f") -> pd.DataFrame:
    ids = pd.Index([f"p{i:03d}" for i in range(arr.shape[0])], name="patient_id")
    return pd.DataFrame(arr, index=ids, columns=[f"{prefix}{j:03d}" for j in range(arr.shape[1])])


@pytest.fixture
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    n = 120
    y = (rng.random(n) < 0.4).astype(int)
    X = rng.normal(size=(n, 12))
    X[:, 0] += 1.5 * y  # strong
    X[:, 1] = X[:, 0] + 0.05 * rng.normal(size=n)  # redundant copy of 0 (slightly noisier)
    X[:, 2] += 0.8 * y  # moderate
    X[:, 3] = 1.0  # constant
    X[:, 4] = np.where(np.arange(n) < 118, 0.0, 1.0)  # 118/120 identical
    return _frame(X), y


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, written out step by step."""
    m = len(p)
    order = np.argsort(p)
    q = np.empty(m)
    running = 1.0
    for rank in range(m, 0, -1):
        idx = order[rank - 1]
        running = min(running, p[idx] * m / rank)
        q[idx] = running
    return q


def test_near_constant_filter(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    f = NearConstantFilter(max_frequency=0.95).fit(X, y)
    expected = []
    for col in X.columns:
        top_share = X[col].value_counts().iloc[0] / len(X)
        expected.append(X[col].var() > 0 and top_share <= 0.95)
    assert f.get_support().tolist() == expected
    out = f.transform(X)
    assert list(out.columns) == [c for c, keep in zip(X.columns, expected, strict=True) if keep]
    assert out.index.equals(X.index)


def test_stability_filter_threshold_missing_and_prefix() -> None:
    X = pd.DataFrame(np.zeros((3, 4)), columns=["rad:a:x", "rad:a:y", "rad:a:z", "clin:age"])
    icc = pd.Series({"rad:a:x": 0.9, "rad:a:y": 0.5})
    kept = StabilityFilter(icc=icc, threshold=0.75, keep_missing=True, prefix="rad:").fit(X)
    assert list(kept.get_feature_names_out()) == ["rad:a:x", "rad:a:z", "clin:age"]
    dropped = StabilityFilter(icc=icc, threshold=0.75, keep_missing=False, prefix="rad:").fit(X)
    assert list(dropped.get_feature_names_out()) == ["rad:a:x", "clin:age"]
    # DataFrame form, keys without the source prefix
    table = pd.DataFrame({"feature": ["a:x", "a:y", "a:z"], "icc": [0.8, 0.74, 0.76]})
    f = StabilityFilter(icc=table, threshold=0.75, prefix="rad:").fit(X)
    assert list(f.get_feature_names_out()) == ["rad:a:x", "rad:a:z", "clin:age"]


@pytest.mark.parametrize("test", ["mannwhitney", "ttest"])
def test_univariate_filter_matches_scipy_per_column_and_bh(data: tuple[pd.DataFrame, np.ndarray], test: str) -> None:
    X, y = data
    X = X.drop(columns=["rad:arterial:f003"])
    f = UnivariateFilter(test=test, alpha=0.05, min_features=0).fit(X, y)
    naive_p = []
    for col in X.columns:
        a, b = X[col].to_numpy()[y == 1], X[col].to_numpy()[y == 0]
        if test == "mannwhitney":
            p = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
        else:
            p = stats.ttest_ind(a, b, equal_var=False).pvalue
        naive_p.append(p)
    naive_p = np.asarray(naive_p)
    np.testing.assert_allclose(f.pvalues_, naive_p, rtol=1e-10)
    np.testing.assert_allclose(f.qvalues_, _bh(naive_p), rtol=1e-10)
    assert f.get_support().tolist() == (_bh(naive_p) < 0.05).tolist()
    assert {"rad:arterial:f000", "rad:arterial:f001", "rad:arterial:f002"} <= set(f.get_feature_names_out())


def test_univariate_filter_min_and_max_features() -> None:
    rng = np.random.default_rng(0)
    X = _frame(rng.normal(size=(60, 20)))
    y = np.tile([0, 1], 30)
    f = UnivariateFilter(min_features=3).fit(X, y)
    assert f.get_support().sum() == 3
    assert set(np.argsort(f.pvalues_)[:3]) == set(np.flatnonzero(f.get_support()))
    g = UnivariateFilter(alpha=1.0, fdr=False, max_features=5).fit(X, y)
    assert g.get_support().sum() == 5


def test_univariate_auc_matches_sklearn(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    arr = X.to_numpy()
    aucs = univariate_auc(arr, y)
    for j in range(arr.shape[1]):
        ref = roc_auc_score(y, arr[:, j]) if np.ptp(arr[:, j]) > 0 else 0.5
        assert aucs[j] == pytest.approx(ref, abs=1e-12)


def test_correlation_filter_keeps_more_relevant_of_a_pair(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    X = X.drop(columns=["rad:arterial:f003", "rad:arterial:f004"])
    f = CorrelationFilter(threshold=0.9).fit(X, y)
    # naive: order by |AUC-0.5| (sklearn), keep if |pearson| <= 0.9 with all kept
    rel = {c: abs(roc_auc_score(y, X[c]) - 0.5) for c in X.columns}
    corr = X.corr().abs()
    kept: list[str] = []
    for c in sorted(X.columns, key=lambda c: -rel[c]):
        if all(corr.loc[c, k] <= 0.9 for k in kept):
            kept.append(c)
    assert set(f.get_feature_names_out()) == set(kept)
    more = "rad:arterial:f000" if rel["rad:arterial:f000"] >= rel["rad:arterial:f001"] else "rad:arterial:f001"
    less = ({"rad:arterial:f000", "rad:arterial:f001"} - {more}).pop()
    assert more in kept and less not in kept


def test_lasso_selector_finds_informative_features() -> None:
    rng = np.random.default_rng(3)
    n = 300
    X = rng.normal(size=(n, 30))
    logit = 1.5 * X[:, 0] - 1.5 * X[:, 1] + 1.0 * X[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = _frame(X * np.linspace(1, 100, 30))  # units differ: internal z-scoring must handle it
    sel = LassoSelector(Cs=12, cv=5, random_state=0).fit(frame, y)
    kept = set(sel.get_feature_names_out())
    assert {"rad:arterial:f000", "rad:arterial:f001", "rad:arterial:f002"} <= kept
    assert len(kept) < 20
    assert sel.C_ in list(np.logspace(-3, 1, 12))
    assert sel.coef_[0] > 0 and sel.coef_[1] < 0
    again = LassoSelector(Cs=12, cv=5, random_state=0).fit(frame, y)
    np.testing.assert_array_equal(sel.coef_, again.coef_)


def test_mrmr_matches_naive_greedy(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    X = X.drop(columns=["rad:arterial:f003"])
    f = MRMRSelector(n_features=4).fit(X, y)
    rel = {c: 2 * abs(roc_auc_score(y, X[c]) - 0.5) for c in X.columns}
    corr = X.corr().abs()
    chosen: list[str] = []
    for _ in range(4):
        best, best_score = None, -np.inf
        for c in X.columns:
            if c in chosen:
                continue
            red = np.mean([corr.loc[c, s] for s in chosen]) if chosen else 0.0
            if rel[c] - red > best_score + 1e-12:
                best, best_score = c, rel[c] - red
        chosen.append(best)
    assert list(X.columns[f.ranking_]) == chosen


def test_tabular_preprocessor_uses_training_statistics_only() -> None:
    train = pd.DataFrame(
        {
            "clin:age": [50.0, np.nan, 70.0, 60.0],
            "clin:sex": pd.Categorical(["M", "F", None, "M"]),
            "clin:stage": ["I", "II", "III", "I"],
            "clin:empty": [np.nan] * 4,
        },
        index=pd.Index(["a", "b", "c", "d"], name="patient_id"),
    )
    test = pd.DataFrame(
        {
            "clin:age": [np.nan, 1000.0],
            "clin:sex": pd.Categorical([None, "F"]),
            "clin:stage": ["IV", None],
            "clin:empty": [1.0, 2.0],
        },
        index=pd.Index(["x", "y"], name="patient_id"),
    )
    prep = TabularPreprocessor().fit(train)
    names = list(prep.get_feature_names_out())
    assert names == ["clin:age", "clin:sex=M", "clin:stage=II", "clin:stage=III"]
    out = prep.transform(test)
    assert out.loc["x", "clin:age"] == 60.0  # training median, not influenced by the test value 1000
    assert out.loc["x", "clin:sex=M"] == 1.0  # training mode M
    assert out.loc["x", "clin:stage=II"] == 0.0 and out.loc["x", "clin:stage=III"] == 0.0  # unseen IV → reference
    assert out.loc["y", "clin:stage=II"] == 0.0 and out.loc["y", "clin:sex=M"] == 0.0  # missing stage → mode I
    with pytest.raises(ModelError, match="missing"):
        prep.transform(test.drop(columns=["clin:age"]))


def test_prefix_pca_matches_sklearn_and_passes_others_through() -> None:
    rng = np.random.default_rng(5)
    deep = _frame(rng.normal(size=(40, 10)), prefix="deep:box:f")
    X = deep.assign(**{"clin:age": rng.normal(size=40)})
    p = PrefixPCA(prefix="deep:box:", n_components=3).fit(X)
    out = p.transform(X)
    assert list(out.columns) == ["clin:age", "deep:box:pc001", "deep:box:pc002", "deep:box:pc003"]
    ref = PCA(n_components=3, svd_solver="full").fit(deep.to_numpy())
    np.testing.assert_allclose(out.iloc[:, 1:].to_numpy(), ref.transform(deep.to_numpy()), atol=1e-10)
    np.testing.assert_array_equal(out["clin:age"].to_numpy(), X["clin:age"].to_numpy())


def _naive_combat(data: np.ndarray, batch: np.ndarray, eb: bool, tol: float = 1e-4) -> np.ndarray:
    """ComBat written feature by feature after sva::ComBat (no covariates, parametric priors).

    The empirical-Bayes iteration follows sva's ``it.sol``: all features of a batch iterate together until
    the largest relative change of γ* and δ*² is below ``tol`` (relative to |old value|).
    """
    n, p = data.shape
    levels = sorted(set(batch))
    out = np.empty_like(data)
    grand = np.zeros(p)
    var_pooled = np.zeros(p)
    for g in range(p):
        x = data[:, g]
        bmeans = {b: x[batch == b].mean() for b in levels}
        grand[g] = sum(bmeans[b] * (batch == b).sum() for b in levels) / n
        var_pooled[g] = sum(((x[batch == b] - bmeans[b]) ** 2).sum() for b in levels) / n
    s = (data - grand) / np.sqrt(var_pooled)
    for b in levels:
        rows = batch == b
        nb = rows.sum()
        g_hat = np.array([s[rows, g].mean() for g in range(p)])
        d_hat = np.array([s[rows, g].var(ddof=1) for g in range(p)])
        if eb:
            g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
            m, v = d_hat.mean(), d_hat.var(ddof=1)
            a, bb = (2 * v + m**2) / v, (m * v + m**3) / v
            g_old, d_old = g_hat.copy(), d_hat.copy()
            while True:
                g_new = np.empty(p)
                d_new = np.empty(p)
                for g in range(p):
                    g_new[g] = (t2 * nb * g_hat[g] + d_old[g] * g_bar) / (t2 * nb + d_old[g])
                    ssq = sum((s[i, g] - g_new[g]) ** 2 for i in np.flatnonzero(rows))
                    d_new[g] = (bb + 0.5 * ssq) / (nb / 2 + a - 1)
                change = max(max(abs(g_new - g_old) / abs(g_old)), max(abs(d_new - d_old) / abs(d_old)))
                g_old, d_old = g_new, d_new
                if change < tol:
                    break
            g_star, d_star = g_old, d_old
        else:
            g_star, d_star = g_hat, d_hat
        out[rows] = (s[rows] - g_star) / np.sqrt(d_star) * np.sqrt(var_pooled) + grand
    return out


@pytest.fixture
def batched() -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(7)
    n, p = 90, 25
    batch = np.array(["A"] * 30 + ["B"] * 35 + ["C"] * 25)
    shift = {"A": 0.0, "B": 2.0, "C": -1.0}
    scale = {"A": 1.0, "B": 2.5, "C": 0.6}
    base = rng.normal(size=(n, p)) + np.linspace(0, 5, p)
    data = np.vstack([base[i] * scale[b] + shift[b] + rng.normal(0, 0.3, p) for i, b in enumerate(batch)])
    X = _frame(data)
    return X, dict(zip(X.index, batch, strict=True))


@pytest.mark.parametrize("eb", [True, False])
def test_combat_matches_naive_implementation(batched: tuple[pd.DataFrame, dict[str, str]], eb: bool) -> None:
    X, centers = batched
    batch = np.array([centers[p] for p in X.index])
    ours = ComBat(batches=centers, empirical_bayes=eb).fit_transform(X)
    # the naive loops iterate with sva's stopping rule: the same numbers up to floating-point rounding
    # (data scale ~1–10; an EB step more or less changes them by ~1e-6, a wrong prior by far more)
    np.testing.assert_allclose(ours.to_numpy(), _naive_combat(X.to_numpy(), batch, eb), rtol=0, atol=1e-10)


def test_combat_empirical_bayes_fixed_point(batched: tuple[pd.DataFrame, dict[str, str]]) -> None:
    """Iterated to convergence, the EB estimates are the fixed point of the naive iteration (no stopping rule)."""
    X, centers = batched
    batch = np.array([centers[p] for p in X.index])
    params = combat_fit(X.to_numpy(), batch, empirical_bayes=True, tol=1e-14)
    sd = np.sqrt(params["var_pooled"])
    ours = np.empty_like(X.to_numpy())
    for k, b in enumerate(params["batches"]):
        rows = batch == b
        z = (X.to_numpy()[rows] - params["grand_mean"]) / sd
        ours[rows] = (z - params["gamma"][k]) / np.sqrt(params["delta"][k]) * sd + params["grand_mean"]
    np.testing.assert_allclose(ours, _naive_combat(X.to_numpy(), batch, True, tol=1e-14), rtol=0, atol=1e-10)


def test_combat_without_eb_equalises_batch_moments(batched: tuple[pd.DataFrame, dict[str, str]]) -> None:
    X, centers = batched
    out = ComBat(batches=centers, empirical_bayes=False).fit_transform(X)
    batch = pd.Series(centers).reindex(out.index)
    means = out.groupby(batch.to_numpy()).mean()
    sds = out.groupby(batch.to_numpy()).std()
    np.testing.assert_allclose(means.to_numpy(), np.tile(means.to_numpy()[0], (3, 1)), atol=1e-10)
    np.testing.assert_allclose(sds.to_numpy(), np.tile(sds.to_numpy()[0], (3, 1)), rtol=1e-10)
    # raw data had very different batch means: the adjustment did something
    raw = X.groupby(batch.to_numpy()).mean()
    assert np.abs(raw.loc["B"] - raw.loc["A"]).min() > 1.0


def test_combat_fitted_on_training_applies_training_estimates(batched: tuple[pd.DataFrame, dict[str, str]]) -> None:
    X, centers = batched
    train, test = X.iloc[::2], X.iloc[1::2]
    cb = ComBat(batches=centers).fit(train)
    params = combat_fit(train.to_numpy(), np.array([centers[p] for p in train.index]))
    one = test.iloc[[0]]
    k = params["batches"].index(centers[one.index[0]])
    sd = np.sqrt(params["var_pooled"])
    expected = ((one.to_numpy() - params["grand_mean"]) / sd - params["gamma"][k]) / np.sqrt(params["delta"][k])
    np.testing.assert_allclose(cb.transform(one).to_numpy(), expected * sd + params["grand_mean"], rtol=1e-12)
    # transforming test patients one at a time or together gives the same numbers (no test-set fitting)
    np.testing.assert_allclose(cb.transform(test).iloc[[0]].to_numpy(), cb.transform(one).to_numpy())


def test_combat_needs_centers_and_two_per_batch(batched: tuple[pd.DataFrame, dict[str, str]]) -> None:
    X, centers = batched
    partial = dict(list(centers.items())[:-1])
    with pytest.raises(ModelError, match="no center known"):
        ComBat(batches=partial).fit(X)
    lonely = dict(centers)
    lonely[X.index[0]] = "Z"
    with pytest.raises(ModelError, match="at least 2"):
        ComBat(batches=lonely).fit(X)


def test_pipeline_composes_and_names_survive(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    pipe = Pipeline(
        [
            ("impute", TabularPreprocessor()),
            ("nc", NearConstantFilter()),
            ("uni", UnivariateFilter(min_features=2)),
            ("corr", CorrelationFilter()),
        ]
    )
    out = pipe.fit_transform(X, y)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(pipe.get_feature_names_out())
    assert "rad:arterial:f003" not in out.columns
    union = SourceUnion([("rad", "rad:", pipe)])
    with pytest.raises(ModelError, match="deep:"):
        SourceUnion([("deep", "deep:", pipe)]).fit(X, y)
    from sklearn.linear_model import LogisticRegression

    scores = cross_val_score(Pipeline([("f", union), ("clf", LogisticRegression())]), X, y, cv=3, scoring="roc_auc")
    assert scores.mean() > 0.7


def test_selection_refuses_missing_values(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    X = X.copy()
    X.iloc[0, 0] = np.nan
    with pytest.raises(ModelError, match="TabularPreprocessor"):
        UnivariateFilter().fit(X, y)


def test_combat_unknown_center_policy(batched: tuple[pd.DataFrame, dict[str, str]]) -> None:
    X, centers = batched
    train, new = X.iloc[:-3], X.iloc[-3:]
    known = {p: centers[p] for p in train.index}
    cb = ComBat(batches=known).fit(train)
    out = cb.transform(new)  # patients without a center: pooled scale (no batch adjustment)
    np.testing.assert_allclose(out.to_numpy(), new.to_numpy(), rtol=1e-12)
    with pytest.raises(ModelError, match="not in the training data"):
        ComBat(batches=known, unknown="error").fit(train).transform(new)
