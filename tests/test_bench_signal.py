"""bench/grade_signal.py's reference methods: the plain chain against a direct sklearn re-implementation, the paired
summary against a hand computation, and the splits (identical, stratified, disjoint)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.signal_chain import fit_plain_chain, predict_plain_chain  # noqa: E402
from bench.signal_report import paired, summarise  # noqa: E402


def _data(seed: int = 0, n: int = 160, p: int = 60) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal(n)
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-1.5 * latent))).astype(int), index=[f"p{i}" for i in range(n)])
    x = rng.standard_normal((n, p))
    x[:, :6] += latent[:, None] * np.linspace(0.4, 1.2, 6)
    x[:, 6] = x[:, 0] * 3 + 0.01 * rng.standard_normal(n)  # a near-duplicate (|r| > 0.9) of column 0
    x[:, 7] = x[:, 1] + 0.6 * rng.standard_normal(n)  # correlated, but below 0.9
    cols = [f"rad:arterial:f{i:02d}" for i in range(p)]
    return pd.DataFrame(x, index=y.index, columns=cols), y


def _naive_chain(x: pd.DataFrame, y: pd.Series, x_test: pd.DataFrame, seed: int) -> np.ndarray:
    """The same chain, written the obvious way (pair loop, pandas correlations, sklearn estimators)."""
    pvals = {c: mannwhitneyu(x.loc[y == 1, c], x.loc[y == 0, c], alternative="two-sided").pvalue for c in x}
    order = sorted((c for c in x if pvals[c] < 0.05), key=lambda c: (pvals[c], list(x.columns).index(c)))
    kept: list[str] = []
    for c in order:
        if all(abs(x[c].corr(x[k])) <= 0.9 for k in kept):
            kept.append(c)
    mu, sd = x[kept].mean(), x[kept].std(ddof=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        l1 = LogisticRegressionCV(
            Cs=20,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed),
            penalty="l1",
            solver="liblinear",
            scoring="roc_auc",
            max_iter=100,  # scikit-learn default, as the chain (and a hand-written script) has it
            random_state=seed,
        ).fit(((x[kept] - mu) / sd).to_numpy(), y.to_numpy())
    sel = [c for c, w in zip(kept, l1.coef_[0], strict=True) if w != 0]
    mu2, sd2 = x[sel].mean(), x[sel].std(ddof=0)
    lr = LogisticRegression(max_iter=5000).fit(((x[sel] - mu2) / sd2).to_numpy(), y.to_numpy())
    return lr.predict_proba(((x_test[sel] - mu2) / sd2).to_numpy())[:, 1]


def test_plain_chain_equals_naive_reimplementation() -> None:
    """Catches: a wrong p threshold or test side, pruning in the wrong order or with ≥ instead of >, scaling with
    test statistics, dropping the L1 step, a different final model."""
    x, y = _data()
    tr, te = x.index[:110], x.index[110:]
    fit = fit_plain_chain(x.loc[tr], y, seed=4)
    got = predict_plain_chain(fit, x.loc[te])
    want = _naive_chain(x.loc[tr], y.loc[tr], x.loc[te], seed=4)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert "rad:arterial:f06" not in fit.radiomics or "rad:arterial:f00" not in fit.radiomics
    assert fit.n_pruned < fit.n_univariate


def test_plain_chain_sees_training_patients_only() -> None:
    """Catches a fit on the test rows: changing the test patients' features changes nothing about the fit."""
    x, y = _data(seed=1)
    tr, te = x.index[:110], x.index[110:]
    a = fit_plain_chain(x.loc[tr], y, seed=0)
    x2 = x.copy()
    x2.loc[te] = x2.loc[te] * 5 + 3
    b = fit_plain_chain(x2.loc[tr], y, seed=0)
    assert a.radiomics == b.radiomics
    np.testing.assert_array_equal(a.model.coef_, b.model.coef_)


def test_plain_chain_with_clinical_uses_training_medians() -> None:
    x, y = _data(seed=2)
    rng = np.random.default_rng(0)
    clin = pd.DataFrame(
        {"clin:age": rng.normal(60, 10, len(x)), "clin:sex": rng.choice(["F", "M"], len(x))}, index=x.index
    )
    clin.iloc[[3, 150], 0] = np.nan
    tr, te = x.index[:110], x.index[110:]
    fit = fit_plain_chain(x.loc[tr], y, seed=0, clinical=clin.loc[tr])
    assert fit.clinical == ("clin:age", "clin:sex=M")
    assert fit.medians["clin:age"] == pytest.approx(clin.loc[tr, "clin:age"].median())
    p = predict_plain_chain(fit, x.loc[te], clinical=clin.loc[te])
    assert p.shape == (len(te),) and np.isfinite(p).all()
    with pytest.raises(ValueError, match="clinical"):
        predict_plain_chain(fit, x.loc[te])


def test_paired_summary_matches_hand_computation() -> None:
    """Catches unpaired differences (means of means), a wrong sign, or losses counted the wrong way."""
    a = [0.70, 0.80, 0.60]
    b = [0.72, 0.75, 0.50]
    rec = [{"split": k, "method": "m", "auc": v, "seconds": 1.0} for k, v in enumerate(a)]
    rec += [{"split": k, "method": "plain", "auc": v, "seconds": 2.0} for k, v in enumerate(b)]
    d = np.subtract(a, b)
    got = paired(rec, "m", "plain")
    assert got is not None
    assert got["mean"] == pytest.approx(d.mean())
    assert got["sd"] == pytest.approx(d.std(ddof=1))
    assert got["lost"] == 1 and got["n"] == 3
    s = summarise(rec)
    assert s["m"]["auc_mean"] == pytest.approx(np.mean(a))
    assert s["m"]["vs_plain"]["mean"] == pytest.approx(d.mean())
    assert paired(rec, "m", "absent") is None


def test_paper_view_keeps_the_arterial_tumour_and_clinical_columns_only() -> None:
    """Catches a paper arm that sees the extended sources (rings, other phases, kinetic) or loses the truth."""
    from bench.grade_signal import paper_view

    cols = [
        "rad:arterial:original_firstorder_Mean",
        "rad:arterial@ring5mm:original_firstorder_Mean",
        "rad:nephrographic:original_firstorder_Mean",
        "kin:washout_mean",
        "clin:age",
        "label",
        "truth:p_high",
    ]
    table = pd.DataFrame(np.arange(2 * len(cols), dtype=float).reshape(2, -1), columns=cols, index=["a", "b"])
    view = paper_view(table)
    assert list(view.columns) == ["rad:arterial:original_firstorder_Mean", "clin:age", "label", "truth:p_high"]
    pd.testing.assert_frame_equal(view, table[list(view.columns)])


def test_goals_pair_each_added_source_with_the_run_without_it() -> None:
    """Catches a goal compared against the wrong run (noise against ext, ext against paper) or the wrong sign."""
    from bench.signal_report import goals

    auc = {"rcc:combined": [0.80, 0.82], "ext:combined": [0.81, 0.80], "extnoise:combined": [0.78, 0.79]}
    auc |= {"paper:combined": [0.70, 0.70], "noise:combined": [0.70, 0.69], "plain": [0.75, 0.75]}
    rec = [{"split": k, "method": m, "auc": v, "seconds": 1.0} for m, vs in auc.items() for k, v in enumerate(vs)]
    lines = {g["goal"].split(": ", 1)[1]: g for g in goals({"cohorts": {"c": {"records": rec}}})}
    ext = lines["the extended sources (phases, rings, kinetic) cost combined ≤ 0.01 AUC"]
    assert ext["value"] == pytest.approx(np.mean([0.01, -0.02])) and ext["status"] == "pass"
    noise_ext = lines["a pure-noise source costs ext's combined ≤ 0.01 AUC"]
    assert noise_ext["value"] == pytest.approx(np.mean([-0.03, -0.01])) and noise_ext["status"] == "FAIL"
    noise_paper = lines["a pure-noise source costs paper's combined ≤ 0.01 AUC"]
    assert noise_paper["value"] == pytest.approx(-0.005) and noise_paper["status"] == "pass"
    assert lines["rcc:combined beats plain by ≥ 0.04 (paired mean)"]["status"] == "pass"
    assert lines["paper:combined beats plain by ≥ 0.04 (paired mean)"]["status"] == "FAIL"
    assert lines["ext:stacked not below ext:kinetic by > 0.01 (the other sources added)"]["status"] == "not measured"


def test_signal_factors_r2_against_hand_computation() -> None:
    """Catches an in-sample R² (no folds), a sign error, or text columns silently dropped."""
    from bench.signal_factors import cv_r2, numeric
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.standard_normal((120, 3)), columns=["a", "b", "c"])
    target = pd.Series(2 * x["a"] - x["b"] + 0.5 * rng.standard_normal(120))
    got = cv_r2(x, target)
    pred = np.empty(120)
    for tr, te in KFold(5, shuffle=True, random_state=0).split(x):
        mu, sd = x.iloc[tr].mean(), x.iloc[tr].std(ddof=0)
        ridge = RidgeCV(alphas=np.logspace(-1, 4, 12)).fit((x.iloc[tr] - mu) / sd, target.iloc[tr])
        pred[te] = ridge.predict((x.iloc[te] - mu) / sd)
    expected = 1 - np.sum((target - pred) ** 2) / np.sum((target - target.mean()) ** 2)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0.8 < got < 0.97  # noise variance 0.25 of 5.25: out of fold, below the in-sample fit
    assert cv_r2(x, pd.Series(rng.standard_normal(120))) < 0.05
    mixed = numeric(pd.DataFrame({"sex": ["F", "M", None, "M"], "v": [1.0, np.inf, 2.0, "3"]}))
    assert mixed["sex"].tolist()[:2] == [1.0, 0.0] and np.isnan(mixed["sex"].iloc[2])
    assert np.isnan(mixed["v"].iloc[1]) and mixed["v"].iloc[3] == 3.0


def test_signal_factors_clipping_uses_training_fold_quantiles() -> None:
    """Catches quantiles taken over every patient (test values leak into the bounds), clipping that is not
    applied to the test fold, or ``--clip 0`` changing the unclipped diagnostic."""
    from bench.signal_factors import ClipQuantiles, cv_r2
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.standard_t(1.5, size=(150, 3)), columns=["a", "b", "c"])  # heavy tails
    target = pd.Series(np.tanh(x["a"]) + 0.3 * rng.standard_normal(150))
    q = 0.05
    got = cv_r2(x, target, clip=q)
    pred = np.empty(150)
    for tr, te in KFold(5, shuffle=True, random_state=0).split(x):
        lo, hi = np.quantile(x.iloc[tr], [q, 1 - q], axis=0)
        xtr, xte = x.iloc[tr].clip(lo, hi, axis=1), x.iloc[te].clip(lo, hi, axis=1)
        mu, sd = xtr.mean(), xtr.std(ddof=0)
        ridge = RidgeCV(alphas=np.logspace(-1, 4, 12)).fit((xtr - mu) / sd, target.iloc[tr])
        pred[te] = ridge.predict((xte - mu) / sd)
    expected = 1 - np.sum((target - pred) ** 2) / np.sum((target - target.mean()) ** 2)
    assert got == pytest.approx(expected, abs=1e-9)
    assert got > cv_r2(x, target) + 0.1  # the unclipped ridge is driven by the tails
    clip = ClipQuantiles(0.0).fit(x.iloc[:100])
    assert clip.transform(x.iloc[100:]).equals(x.iloc[100:])


def test_factor_route_against_naive_reimplementation() -> None:
    """Catches a second stage trained on in-sample (not out-of-fold) predicted factors, factors paired with the
    wrong column, or a fold split other than the stated one; and the route reaches the true-factor regression
    when the features measure the factors well."""
    from bench.signal_chain import fit_predict_lr
    from bench.signal_factors import fit_predict_factor_route
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(3)
    n, n_tr = 260, 180
    z = pd.DataFrame(rng.standard_normal((n, 2)), columns=["truth:z_a", "truth:z_b"])
    y = pd.Series((z["truth:z_a"] - 0.7 * z["truth:z_b"] + rng.standard_normal(n) > 0).astype(int))
    x = pd.DataFrame(
        np.column_stack([z + 0.3 * rng.standard_normal((n, 2)), rng.standard_normal((n, 6))]),
        columns=[f"rad:f{i}" for i in range(8)],
    )
    tr, te = list(range(n_tr)), list(range(n_tr, n))
    got = fit_predict_factor_route(x.loc[tr], z.loc[tr], y.loc[tr], x.loc[te])

    def ridge(a: pd.DataFrame, b: pd.Series) -> tuple[RidgeCV, pd.Series, pd.Series]:
        mu, sd = a.mean(), a.std(ddof=0)
        return RidgeCV(alphas=np.logspace(-1, 4, 12)).fit((a - mu) / sd, b), mu, sd

    oof = pd.DataFrame(index=tr, columns=z.columns, dtype=float)
    test = pd.DataFrame(index=te, columns=z.columns, dtype=float)
    xtr = x.loc[tr]
    for factor in z.columns:
        for a, b in KFold(5, shuffle=True, random_state=0).split(xtr):
            model, mu, sd = ridge(xtr.iloc[a], z.loc[tr, factor].iloc[a])
            oof.iloc[b, oof.columns.get_loc(factor)] = model.predict((xtr.iloc[b] - mu) / sd)
        model, mu, sd = ridge(xtr, z.loc[tr, factor])
        test[factor] = model.predict((x.loc[te] - mu) / sd)
    expected = fit_predict_lr(oof, y.loc[tr], test)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    truth = roc_auc_score(y.loc[te], fit_predict_lr(z.loc[tr], y.loc[tr], z.loc[te]))
    assert roc_auc_score(y.loc[te], got) > truth - 0.05


def test_pooled_differences_concatenate_every_cohorts_splits() -> None:
    """Catches a mean of per-cohort means (unequal split counts) or unpaired differences."""
    from bench.signal_report import pooled

    def recs(a: list[float], b: list[float]) -> list[dict[str, object]]:
        out = [{"split": k, "method": "m", "auc": v, "seconds": 0.0} for k, v in enumerate(a)]
        return out + [{"split": k, "method": "plain", "auc": v, "seconds": 0.0} for k, v in enumerate(b)]

    result = {"cohorts": {"c1": {"records": recs([0.8, 0.7], [0.7, 0.75])}, "c2": {"records": recs([0.6], [0.5])}}}
    (row,) = pooled(result, (("m", "plain"), ("absent", "plain")))
    d = np.array([0.1, -0.05, 0.1])
    assert row["mean"] == pytest.approx(d.mean()) and row["sd"] == pytest.approx(d.std(ddof=1))
    assert row["lost"] == 1 and row["n"] == 3


def test_signal_compare_pairs_the_same_method_across_runs_on_the_same_splits() -> None:
    from bench.signal_compare import compare

    def run(aucs: dict[str, list[float]], seeds: list[int]) -> dict[str, object]:
        records = [{"split": k, "method": m, "auc": v} for m, vals in aucs.items() for k, v in enumerate(vals)]
        return {"cohorts": {"c": {"split_seeds": seeds, "records": records}}}

    new = run(
        {"paper:radiomics": [0.80, 0.70, 0.90], "paper:clinical": [0.6, 0.6, 0.7], "only:new": [1, 1, 1]}, [1, 2, 3]
    )
    base = run({"paper:radiomics": [0.75, 0.72, 0.85], "paper:clinical": [0.6, 0.6, 0.7]}, [1, 2, 3])
    d = compare(new, base, "c")
    assert set(d) == {"paper:radiomics", "paper:clinical"}  # only methods of both runs
    diff = np.array([0.05, -0.02, 0.05])
    assert d["paper:radiomics"]["mean"] == pytest.approx(diff.mean())
    assert d["paper:radiomics"]["sd"] == pytest.approx(diff.std(ddof=1))
    assert d["paper:radiomics"]["lost"] == 1 and d["paper:clinical"]["mean"] == 0.0
    with pytest.raises(SystemExit, match="other splits"):
        compare(new, run({"paper:radiomics": [0.8, 0.7, 0.9]}, [1, 2, 4]), "c")
    with pytest.raises(SystemExit, match="not in both"):
        compare(new, base, "c9")


def test_signal_compare_pools_every_split_of_every_cohort() -> None:
    """Catches a mean of per-cohort means, splits of two cohorts merged by their number, or a method pooled
    from one cohort only."""
    from bench.signal_compare import compare_pooled

    def run(per_cohort: dict[str, dict[str, list[float]]]) -> dict[str, object]:
        cohorts = {}
        for c, aucs in per_cohort.items():
            records = [{"split": k, "method": m, "auc": v} for m, vals in aucs.items() for k, v in enumerate(vals)]
            cohorts[c] = {"split_seeds": list(range(len(next(iter(aucs.values()))))), "records": records}
        return {"cohorts": cohorts}

    new = run({"a": {"m": [0.8, 0.7], "x": [0.5, 0.5]}, "b": {"m": [0.9, 0.6, 0.6]}})
    base = run({"a": {"m": [0.7, 0.75], "x": [0.4, 0.4]}, "b": {"m": [0.8, 0.6, 0.7]}})
    pooled = compare_pooled(new, base, ["a", "b"])
    assert set(pooled) == {"m"}  # x is in cohort a only
    d = np.array([0.1, -0.05, 0.1, 0.0, -0.1])
    assert pooled["m"]["mean"] == pytest.approx(d.mean()) and pooled["m"]["sd"] == pytest.approx(d.std(ddof=1))
    assert pooled["m"]["lost"] == 2 and pooled["m"]["n"] == 5
    from bench.signal_compare import merge_runs

    merged = merge_runs([run({"a": {"m": [0.8, 0.7]}}), run({"b": {"m": [0.9, 0.6, 0.6]}})])
    assert compare_pooled(merged, base, ["a", "b"])["m"] == pooled["m"]
    with pytest.raises(SystemExit, match="two of the runs"):
        merge_runs([merged, run({"a": {"m": [0.5, 0.5]}})])


def test_top_correlated_keeps_the_largest_absolute_correlations() -> None:
    """Catches a signed (not absolute) correlation, which drops a strongly anti-correlated column, and columns
    returned out of their order."""
    from bench.signal_learners import TopCorrelated

    rng = np.random.default_rng(5)
    n = 200
    y = (rng.random(n) < 0.4).astype(int)
    x = rng.standard_normal((n, 12))
    x[:, 3] -= 2.0 * y  # strongly anti-correlated
    x[:, 8] += 1.0 * y
    x[:, 10] += 0.5 * y
    r = np.array([abs(np.corrcoef(x[:, j], y)[0, 1]) for j in range(x.shape[1])])
    expected = np.sort(np.argsort(-r)[:3])
    got = TopCorrelated(3).fit(x, y)
    assert list(got.keep_) == list(expected) == [3, 8, 10]
    np.testing.assert_array_equal(got.transform(x[:5]), x[:5, expected])


def test_pls_score_equals_a_hand_computed_one_component_pls() -> None:
    """PLS1 with one component: weight w = Xcᵀ yc, score t = Xc w, prediction ȳ + t (tᵀ yc)/(tᵀ t); the test
    patients are centred with the training means. Catches scores of the wrong sign, test data centred on itself
    and a decision threshold other than the 0/1 label's midpoint."""
    from bench.signal_learners import PLSScore

    rng = np.random.default_rng(6)
    x = rng.standard_normal((150, 7)) + 3.0
    y = np.where(x[:, 0] - x[:, 2] + 0.5 * rng.standard_normal(150) > 0, "high", "low")
    tr, te = slice(0, 110), slice(110, 150)
    target = (y[tr] == "low").astype(float)  # the second class in sorted order is the positive one
    mu = x[tr].mean(axis=0)
    xc, yc = x[tr] - mu, target - target.mean()
    w = xc.T @ yc
    t = xc @ w
    pred = target.mean() + ((x[te] - mu) @ w) * (t @ yc) / (t @ t)
    model = PLSScore(1).fit(x[tr], y[tr])
    np.testing.assert_allclose(model.decision_function(x[te]), pred - 0.5, rtol=1e-8, atol=1e-10)
    assert list(model.predict(x[te])) == list(np.where(pred > 0.5, "low", "high"))


@pytest.mark.parametrize("name", ["PLSScore", "TopCorrelated"])
def test_signal_learners_estimators_pass_check_estimator(name: str) -> None:
    from bench import signal_learners
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(getattr(signal_learners, name)())


def test_signal_learners_summary_pairs_only_splits_both_sides_have() -> None:
    """A reference missing on one split (absent from signal.json) is left out of the pairing, not turned into a
    NaN mean; the differences are paired per split and pooled over cohorts."""
    from bench.signal_learners import summary

    frame = pd.DataFrame(
        {
            "cohort": ["a", "a", "b", "b"],
            "ridge": [0.80, 0.70, 0.75, 0.60],
            "lasso": [0.78, 0.74, 0.75, 0.50],
            "plain": [0.70, np.nan, 0.80, 0.55],
        }
    )
    got = summary(frame, ("ridge", "lasso"))
    assert got["lasso"]["auc"] == {"a": pytest.approx(0.76), "b": pytest.approx(0.625)}
    d = np.array([-0.02, 0.04, 0.0, -0.10])
    assert got["lasso"]["vs ridge"] == {
        "mean": pytest.approx(d.mean()),
        "sd": pytest.approx(d.std(ddof=1)),
        "lost": 2,
        "n": 4,
    }
    assert got["ridge"]["vs plain"]["n"] == 3
    assert got["ridge"]["vs plain"]["mean"] == pytest.approx(np.mean([0.10, -0.05, 0.05]))
    assert "vs extg:combined" not in got["ridge"]
