"""``classifier: auto``: the right model family on easy signals, chosen from training patients only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from rccgrade.models.arms import build_arm, fit_arms
from rccgrade.models.auto import choose_classifier
from rccgrade.models.classifiers import make_classifier
from rccgrade.models.split import make_split, train_test_ids

TREES = {"random_forest", "xgboost", "lightgbm"}
LINEAR = {"logistic", "logistic_enet"}


def _table(kind: str, seed: int = 0, n: int = 240) -> tuple[pd.DataFrame, pd.Series]:
    """Four radiomics columns; ``xor``: high grade when exactly one of f000, f001 is positive; ``linear``: a
    logistic model of f000 and f001."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    X = rng.normal(size=(n, 4))
    if kind == "xor":
        y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(int)
        flip = rng.random(n) < 0.05
        y = np.where(flip, 1 - y, y)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - 1.5 * X[:, 1])))).astype(int)
    table = pd.DataFrame(X, index=ids, columns=[f"rad:arterial:f{j:03d}" for j in range(4)])
    return table, pd.Series(y, index=ids, name="high_grade")


def _settings(fast: Callable[..., Any], candidates: list[str]) -> Any:
    return fast(
        arms=["radiomics"],
        classifier="auto",
        auto_candidates=candidates,
        selection={"steps": ["near_constant"]},
        nested_oof=False,
    )


@pytest.mark.parametrize(
    ("kind", "family"),
    [("xor", TREES), ("linear", LINEAR)],
)
def test_auto_picks_the_right_family(kind: str, family: set[str], fast: Callable[..., Any]) -> None:
    table, y = _table(kind)
    train, test = train_test_ids(make_split(y, seed=0))
    settings = _settings(fast, ["logistic", "logistic_enet", "random_forest", "lightgbm"])
    res = fit_arms(table, y, train, settings, seed=0)
    auto = res.fusion["radiomics"]["auto"]
    print(kind, auto["scores"])
    assert auto["chosen"] in family, auto
    assert set(auto["scores"]) == {"logistic", "logistic_enet", "random_forest", "lightgbm"}
    assert res.selected["radiomics"] is not None
    assert roc_auc_score(y.loc[test], res.test_proba["radiomics"]) > 0.8
    # the arm was fitted with the chosen classifier
    clf = res.models["radiomics"].named_steps["clf"]
    assert type(clf) is type(make_classifier(auto["chosen"]))


def test_choice_scores_equal_a_naive_fold_loop(fast: Callable[..., Any]) -> None:
    table, y = _table("xor", seed=1, n=150)
    settings = _settings(fast, ["logistic", "random_forest"])
    union = build_arm("radiomics", list(table.columns), settings, seed=0, classifier="logistic").steps[0][1]
    folds = StratifiedKFold(3, shuffle=True, random_state=5)
    choice = choose_classifier(union, table, y, folds, ["logistic", "random_forest"], param_grids=settings.param_grids)
    for name in ("logistic", "random_forest"):
        expected = []
        for tr, va in folds.split(np.zeros(len(y)), y.to_numpy()):
            feats = clone(union).fit(table.iloc[tr], y.iloc[tr])
            clf = make_classifier(name).set_params(**{k: v[0] for k, v in settings.param_grids[name].items()})
            clf.fit(feats.transform(table.iloc[tr]), y.iloc[tr])
            expected.append(roc_auc_score(y.iloc[va], clf.predict_proba(feats.transform(table.iloc[va]))[:, 1]))
        np.testing.assert_allclose(choice.fold_scores[name], expected, rtol=1e-12)
    assert choice.chosen == "random_forest"


def test_choice_never_sees_test_patients_and_is_deterministic(fast: Callable[..., Any]) -> None:
    table, y = _table("linear", seed=2, n=200)
    train, test = train_test_ids(make_split(y, seed=2))
    settings = _settings(fast, ["logistic", "random_forest", "lightgbm"])
    base = fit_arms(table, y, train, settings, seed=2)
    wild, y_wild = table.copy(), y.copy()
    # test rows where a tree would shine: an XOR pattern, and flipped labels
    wild.loc[test, "rad:arterial:f002"] = np.where(y.loc[test] == 1, 5.0, -5.0)
    y_wild.loc[test] = 1 - y_wild.loc[test]
    other = fit_arms(wild, y_wild, train, settings, seed=2)
    assert other.fusion["radiomics"]["auto"] == base.fusion["radiomics"]["auto"]
    again = fit_arms(table, y, train, settings, seed=2)
    assert again.fusion == base.fusion
    np.testing.assert_array_equal(again.test_proba.to_numpy(), base.test_proba.to_numpy())
