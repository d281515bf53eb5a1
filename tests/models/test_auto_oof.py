"""``classifier: auto`` with nested OOF: every outer fold chooses its classifier again, on its training part only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

import rccgrade.models.auto as auto
from rccgrade.models.arms import build_arm, fit_arms
from rccgrade.models.auto import choose_classifier
from rccgrade.models.split import make_split, train_test_ids
from rccgrade.models.tuning import stratified_folds

from .test_auto import _table

CANDIDATES = ["logistic", "random_forest"]


def _settings(fast: Callable[..., Any], nested: bool) -> Any:
    return fast(
        arms=["radiomics"],
        classifier="auto",
        auto_candidates=CANDIDATES,
        selection={"steps": ["near_constant"]},
        nested_oof=nested,
    )


@pytest.fixture(scope="module")
def case() -> tuple[Any, Any, list[str]]:
    # seed 4: a weak linear signal on which one outer fold prefers the random forest while all the training
    # patients together prefer logistic regression (checked below), so a fixed choice gives other OOF numbers
    table, y = _table("linear", seed=4, n=150)
    train, _ = train_test_ids(make_split(y, seed=4))
    return table, y, train


def test_oof_probabilities_redo_the_choice_in_every_outer_fold(
    case: tuple[Any, Any, list[str]], fast: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    table, y, train = case
    settings = _settings(fast, nested=True)
    calls: list[int] = []
    real = auto._choose
    monkeypatch.setattr(auto, "_choose", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = fit_arms(table, y, train, settings, seed=4)
    record = res.fusion["radiomics"]["auto"]
    X, lab = table.loc[train], y.loc[train].to_numpy()
    folds = stratified_folds(lab, settings.cv_folds, 4)
    assert len(calls) == 1 + folds.n_splits  # each choice once: the fold fits look theirs up
    assert record["oof_choice"] == "per_fold" and "precomputed" not in record
    union = build_arm("radiomics", list(table.columns), settings, seed=4, classifier="logistic").steps[0][1]
    expected = np.full(len(lab), np.nan)
    naive_choices = []
    for tr, va in folds.split(np.zeros(len(lab)), lab):
        inner = stratified_folds(lab[tr], settings.cv_folds, 4)
        chosen = choose_classifier(
            union, X.iloc[tr], lab[tr], inner, CANDIDATES, param_grids=settings.param_grids, seed=4
        )
        naive_choices.append(chosen.chosen)
        grid = {f"clf__{k}": v[0] for k, v in settings.param_grids[chosen.chosen].items()}
        arm = clone(build_arm("radiomics", list(table.columns), settings, seed=4, classifier=chosen.chosen))
        expected[va] = arm.set_params(**grid).fit(X.iloc[tr], lab[tr]).predict_proba(X.iloc[va])[:, 1]
    assert [f["chosen"] for f in record["outer_folds"]] == naive_choices
    assert set(naive_choices) != {record["chosen"]}, "the case must have a fold whose choice differs"
    np.testing.assert_allclose(res.oof_proba["radiomics"].to_numpy(), expected, rtol=0, atol=1e-12)


def test_without_nested_oof_the_choice_is_fixed_and_says_so(
    case: tuple[Any, Any, list[str]], fast: Callable[..., Any]
) -> None:
    table, y, train = case
    res = fit_arms(table, y, train, _settings(fast, nested=False), seed=4)
    record = res.fusion["radiomics"]["auto"]
    assert record["oof_choice"] == "fixed" and "outer_folds" not in record
    nested = fit_arms(table, y, train, _settings(fast, nested=True), seed=4)
    assert nested.fusion["radiomics"]["auto"]["chosen"] == record["chosen"]  # the final choice is the same
    # the final model and the test predictions do not depend on how the OOF probabilities were made
    np.testing.assert_array_equal(nested.test_proba.to_numpy(), res.test_proba.to_numpy())
